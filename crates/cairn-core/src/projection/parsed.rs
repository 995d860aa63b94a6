//! The part of judging an event that needs nothing but the event itself: decoding its body and
//! parsing the Automerge changes it carries. It is pure, so a replay, an audit or a sync batch
//! computes it on all cores ahead of the projection, which then does only what depends on the
//! causal past, in order.

use automerge::Change;

use crate::body::Body;
use crate::docs::parse_change;
use crate::error::DecodeError;
use crate::event::Event;
use crate::ids::EventId;

/// An event's decoded body and parsed changes, from [`Parsed::of`], for
/// [`super::Projection::ingest_parsed`].
///
/// Nothing here is a verdict: a body that does not decode or a change that does not parse is
/// reported by the projection at the same point of validation, and with the same rejection, as
/// when it parses the event itself, so verdicts do not depend on who parsed.
///
/// Boxed: a body and two parsed changes are over a kilobyte, and batches of these are moved
/// between stages.
#[derive(Debug)]
pub struct Parsed(pub(crate) Box<Contents>);

/// What [`Parsed`] holds.
#[derive(Debug)]
pub(crate) struct Contents {
    /// The event this was parsed from; [`super::Projection::ingest_parsed`] ignores a `Parsed`
    /// of another event and parses the event itself.
    pub(crate) event: EventId,
    pub(crate) body: Result<Body, DecodeError>,
    pub(crate) changes: Changes,
}

/// Parsed Automerge changes by the document they are for; `None` where the body carries none
/// (or was not parsed ahead).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub(crate) workspace: Option<Result<Change, String>>,
    pub(crate) asset: Option<Result<Change, String>>,
}

impl Parsed {
    /// Decodes the body of `ev` and parses each change with the actor check against its author.
    /// Cost: one body decode plus one Automerge change parse per change carried.
    pub fn of(ev: &Event) -> Parsed {
        let author = ev.author();
        let parse = |bytes: &[u8]| parse_change(bytes, &author);
        let body = ev.body();
        let changes = match &body {
            Ok(Body::Genesis(g)) => Changes {
                workspace: Some(parse(&g.workspace_change)),
                asset: None,
            },
            Ok(Body::Member(m)) => Changes {
                workspace: Some(parse(&m.workspace_change)),
                asset: None,
            },
            Ok(Body::Doc(d)) => Changes {
                workspace: d.workspace_change.as_deref().map(parse),
                asset: d.asset_change.as_deref().map(parse),
            },
            _ => Changes::default(),
        };
        Parsed(Box::new(Contents {
            event: ev.id(),
            body,
            changes,
        }))
    }
}

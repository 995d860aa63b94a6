//! `cairn demo`: builds a plausible estate to explore, from the fixtures embedded in the binary.
//!
//! Two devices take part, so the estate shows what offline work produces: alice (admin, the
//! engineering laptop) and bob (engineer, the site server). Bob's store lives in a temporary
//! directory and exchanges events with alice's through `Store::ingest`, the path sync uses.

use anyhow::{Context, Result, bail};
use std::path::Path;

use cairn_core::domain::Role;
use cairn_core::{AssetId, EventKind, VersionId};
use cairn_store::Store;

use cairn_app::assets::{self, NewAsset, SetFields};
use cairn_app::versions;

use crate::ctx;

const L5X: &str = include_str!("../../../fixtures/configs/Line3_Filler.L5X");
const TIA: &str = include_str!("../../../fixtures/configs/FB_PumpControl.xml");
const PLCOPEN: &str = include_str!("../../../fixtures/configs/POU_TankLevel.xml");
const SWITCH: &str = include_str!("../../../fixtures/configs/sw-core-01.cfg");
const DRIVE: &str = include_str!("../../../fixtures/configs/VFD-P101-params.csv");

struct Spec {
    name: String,
    kind: &'static str,
    vendor: &'static str,
    model: &'static str,
    site: &'static str,
    address: String,
    file: (&'static str, &'static str),
}

fn estate() -> Vec<Spec> {
    let sites = ["North-Filling", "North-Utilities", "South-Packaging"];
    let codes = ["NF", "NU", "SP"];
    let kinds: [(&str, &str, &str, (&str, &str)); 5] = [
        ("plc", "Rockwell", "1756-L83E", ("Controller.L5X", L5X)),
        (
            "plc",
            "Siemens",
            "S7-1516-3 PN/DP",
            ("FB_PumpControl.xml", TIA),
        ),
        (
            "plc",
            "Beckhoff",
            "CX5140 (CODESYS)",
            ("POU_TankLevel.xml", PLCOPEN),
        ),
        (
            "switch",
            "Hirschmann",
            "RSP35",
            ("running-config.cfg", SWITCH),
        ),
        ("drive", "ABB", "ACS880-01", ("parameters.csv", DRIVE)),
    ];
    let prefix = ["PLC", "PLC", "PLC", "SW", "VFD"];
    let mut out = Vec::new();
    for (s, site) in sites.iter().enumerate() {
        for i in 0..11 {
            let k = i % 5;
            let (kind, vendor, model, file) = kinds[k];
            out.push(Spec {
                name: format!("{}-{}-{:02}", prefix[k], codes[s], i + 1),
                kind,
                vendor,
                model,
                site,
                address: format!("10.{}.{}.{}", 30 + s, 4 + k, 20 + i),
                file,
            });
        }
    }
    out
}

/// Commits one text file as a new version on `branch`, through the same operation as
/// `cairn commit`.
fn commit_text(
    store: &mut Store,
    asset: AssetId,
    branch: &str,
    name: &str,
    content: &str,
    msg: &str,
    tmp: &Path,
) -> Result<VersionId> {
    let f = tmp.join(name);
    std::fs::write(&f, content).with_context(|| format!("writing {}", f.display()))?;
    let req = versions::Commit {
        asset: asset.to_hex(),
        branch: branch.into(),
        message: msg.into(),
        paths: vec![f],
        stored_as: None,
    };
    Ok(versions::commit(store, &req, &())?.version)
}

/// Sends every event `from` has to `to`.
fn exchange(from: &Store, to: &mut Store) -> Result<()> {
    // Blobs first (as plaintext, re-encrypted under the receiver's key), then events.
    for v in from
        .projection()
        .asset_ids()
        .flat_map(|a| from.projection().versions_of(a))
    {
        for f in v.files {
            if !to.blobs().contains(&f.blob) {
                to.blobs().put_bytes(&from.blobs().read(&f.blob)?)?;
            }
        }
    }
    let batch = from.log()?.into_iter().map(|e| e.bytes).collect();
    let rep = to.ingest(batch)?;
    if !rep.rejected.is_empty() {
        bail!("demo exchange rejected events: {:?}", rep.rejected);
    }
    Ok(())
}

/// Builds the estate in a sibling directory and moves it into place only when complete.
pub(crate) fn run(dir: &Path, force: bool) -> Result<()> {
    if Store::exists(dir) && !force {
        bail!(
            "{} already holds a workspace; pass --force to replace it",
            dir.display()
        );
    }
    let pass = ctx::passphrase()?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("workspace");
    let building = dir.with_file_name(format!(".{name}.building"));
    if building.exists() {
        std::fs::remove_dir_all(&building)
            .with_context(|| format!("removing {}", building.display()))?;
    }
    let res = build(&building, &pass);
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&building);
        return res;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&building, dir)
        .with_context(|| format!("moving the demo into {}", dir.display()))?;
    let d = dir.display();
    say!("explore it (CAIRN_PASSPHRASE must be set to the passphrase you used):");
    for (cmd, note) in [
        ("asset list".to_string(), ""),
        (
            "asset show SW-NF-04".into(),
            "  # diverged main and an address conflict",
        ),
        ("log PLC-NF-01".into(), ""),
        ("branch list PLC-NF-01".into(), ""),
        ("asset show VFD-NF-05".into(), "  # drift against golden"),
        ("audit log".into(), ""),
        ("audit verify".into(), ""),
    ] {
        say!("  cairn --data-dir {d} {cmd}{note}");
    }
    Ok(())
}

fn build(dir: &Path, pass: &str) -> Result<()> {
    let mut alice = Store::init(
        dir,
        pass.as_bytes(),
        "Plant North",
        "alice@eng-laptop",
        cairn_store::now_millis(),
    )?;
    let scratch = dir.join(".demo-scratch");
    let peer_dir = scratch.join("bob");
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let mut bob = Store::create(
        &peer_dir,
        pass.as_bytes(),
        "bob@site-server",
        cairn_store::keyfile::DEFAULT_COST,
    )?;
    let bob_id = bob.device().device_id();
    alice.append(|w, p| {
        w.member(
            p,
            EventKind::DeviceEnrolled,
            bob_id,
            Role::Engineer,
            "bob@site-server",
            None,
            cairn_store::now_millis(),
        )
    })?;

    let specs = estate();
    let bar = crate::progress::items(specs.len() as u64, "building estate");
    let mut ids = Vec::new();
    for s in &specs {
        let new = NewAsset {
            name: s.name.clone(),
            kind: s.kind.into(),
            fields: vec![
                ("vendor".into(), s.vendor.into()),
                ("model".into(), s.model.into()),
                ("site".into(), s.site.into()),
                ("address".into(), s.address.clone()),
                (
                    "criticality".into(),
                    if s.kind == "plc" { "high" } else { "medium" }.into(),
                ),
            ],
            tags: vec![("line".into(), format!("L{}", ids.len() % 4 + 1))],
        };
        let id = assets::add(&mut alice, &new)?.asset;
        let tmp = scratch.join(id.to_hex());
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let v1 = commit_text(
            &mut alice,
            id,
            "main",
            s.file.0,
            s.file.1,
            "Initial export from vendor tool",
            &tmp,
        )?;
        let v2content = s
            .file
            .1
            .replacen("500.0", "520.0", 1)
            .replacen("4.5", "4.8", 1)
            .replacen("10.000", "8.000", 1)
            .replacen("logging trap informational", "logging trap warnings", 1)
            + "\n";
        let v2 = commit_text(
            &mut alice,
            id,
            "main",
            s.file.0,
            &v2content,
            "Tune setpoints after FAT",
            &tmp,
        )?;
        let golden = versions::SetGolden {
            asset: id.to_hex(),
            version: if ids.len() % 3 == 0 { v1 } else { v2 }.to_hex(),
        };
        versions::set_golden(&mut alice, &golden)?;
        ids.push((id, s, v2content));
        bar.inc(1);
    }
    bar.finish_and_clear();

    // A commissioning branch on the first PLC.
    let (plc, spec, v2content) = (ids[0].0, ids[0].1, ids[0].2.clone());
    let from = alice.projection().branch_heads(&plc, "main")[0];
    let branch = versions::NewBranch {
        asset: plc.to_hex(),
        name: "commissioning".into(),
        from: from.to_hex(),
    };
    versions::create_branch(&mut alice, &branch)?;
    let tmp = scratch.join("branch");
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    commit_text(
        &mut alice,
        plc,
        "commissioning",
        spec.file.0,
        &v2content.replace("2500", "3000"),
        "Longer valve travel timeout for SAT",
        &tmp,
    )?;

    // Offline work on two devices: bob gets the log, then both edit and commit concurrently.
    exchange(&alice, &mut bob)?;
    let (sw, sw_spec, sw_content) = (ids[3].0, ids[3].1, ids[3].2.clone());
    commit_text(
        &mut alice,
        sw,
        "main",
        sw_spec.file.0,
        &sw_content.replace("vlan 99", "vlan 99\n name MGMT-NEW"),
        "alice: rename mgmt VLAN",
        &tmp,
    )?;
    commit_text(
        &mut bob,
        sw,
        "main",
        sw_spec.file.0,
        &sw_content.replace("ntp server 10.31.0.5 prefer", "ntp server 10.31.0.6 prefer"),
        "bob: new NTP server",
        &tmp,
    )?;
    let edit = |s: &mut Store, v: &str| -> Result<()> {
        let req = SetFields {
            asset: sw.to_hex(),
            assignments: vec![("address".into(), v.into())],
        };
        assets::set_fields(s, &req)?;
        Ok(())
    };
    edit(&mut alice, "10.31.99.2")?;
    edit(&mut bob, "10.31.99.3")?;
    exchange(&bob, &mut alice)?;

    // A drift check: the running config on one drive no longer matches golden.
    let (vfd, vfd_spec, _) = (ids[4].0, ids[4].1, ids[4].2.clone());
    let export = scratch.join("field-export");
    std::fs::create_dir_all(&export).with_context(|| format!("creating {}", export.display()))?;
    std::fs::write(
        export.join(vfd_spec.file.0),
        DRIVE.replace(
            "23.12,Acceleration time 1,10.000",
            "23.12,Acceleration time 1,3.000",
        ),
    )
    .context("writing export")?;
    let check = versions::CheckDrift {
        asset: vfd.to_hex(),
        export,
    };
    versions::drift(&mut alice, &check)?;

    drop(bob);
    std::fs::remove_dir_all(&scratch).with_context(|| format!("removing {}", scratch.display()))?;
    let p = alice.projection();
    let assets = p.assets();
    say!("demo workspace \"Plant North\" built");
    say!(
        "  {} sites, {} assets, {} events; {} diverged, {} with field conflicts, {} drifted",
        p.sites().len(),
        assets.len(),
        p.applied_count(),
        assets.iter().filter(|a| a.diverged()).count(),
        assets
            .iter()
            .filter(|a| !a.doc.conflicts().is_empty())
            .count(),
        assets.iter().filter(|a| a.drifted()).count()
    );
    Ok(())
}

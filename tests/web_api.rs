//! The local node's HTTP API, against the real `cairn serve` on loopback: the token, Host and
//! Origin guards; the raw signed-event feed; blobs; live updates; and writes signed by the
//! node, with bad input refused and nothing written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cairn_core::Event;
use common::Ws;

/// A multipart body with boundary `XcairnX`: (field name, file name, bytes) per part.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut form = Vec::new();
    for (name, file, data) in parts {
        let disp = match file {
            Some(f) => format!("name=\"{name}\"; filename=\"{f}\""),
            None => format!("name=\"{name}\""),
        };
        form.extend_from_slice(
            format!("--XcairnX\r\nContent-Disposition: form-data; {disp}\r\n\r\n").as_bytes(),
        );
        form.extend_from_slice(data);
        form.extend_from_slice(b"\r\n");
    }
    form.extend_from_slice(b"--XcairnX--\r\n");
    form
}

/// One HTTP/1.1 exchange over a fresh connection: (status, lower-cased headers, body).
fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let hostport = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    let mut s = TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {hostport}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let hs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if hs
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, hs, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
}

fn split_url(url: &str) -> (String, String) {
    let (base, token) = url.split_once("/?token=").unwrap();
    (base.to_string(), token.to_string())
}

fn log_len(ws: &Ws) -> usize {
    let v: serde_json::Value = serde_json::from_str(&ws.ok(&["audit", "log", "--json"])).unwrap();
    v.as_array().unwrap().len()
}

fn workspace() -> Ws {
    let ws = Ws::new();
    ws.init();
    ws.ok(&[
        "asset", "add", "RTU-7", "--kind", "rtu", "--vendor", "ABB", "--model", "RTU560", "--site",
        "South",
    ]);
    let cfg = ws.path("rtu.xml");
    std::fs::write(&cfg, "<rtu addr=\"7\" marker=\"web-api-blob\"/>\n").unwrap();
    ws.ok(&["commit", "RTU-7", cfg.to_str().unwrap(), "-m", "baseline"]);
    ws
}

#[test]
fn token_host_and_origin_guards_refuse_and_write_nothing() {
    let ws = workspace();
    let (_server, _, url) = ws.serve_web();
    let (base, token) = split_url(&url);
    let bearer = format!("Bearer {token}");
    let auth = ("Authorization", bearer.as_str());

    let (st, _, body) = http(&base, "GET", "/api/info", &[], b"");
    assert_eq!(st, 401, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("token"));
    let (st, _, _) = http(
        &base,
        "GET",
        "/api/info",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(st, 401);
    let (st, _, _) = http(&base, "GET", "/api/events?token=nope", &[], b"");
    assert_eq!(st, 401);

    let (st, _, body) = http(&base, "GET", "/api/info", &[auth], b"");
    assert_eq!(st, 200);
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["workspace"], "Plant North");

    // DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1 sends its own Host.
    let port = base.rsplit(':').next().unwrap();
    let evil_host = format!("evil.example:{port}");
    let (st, _, _) = http(
        &base,
        "GET",
        "/api/info",
        &[auth, ("Host", &evil_host)],
        b"",
    );
    assert_eq!(st, 403);
    let (st, _, _) = http(&base, "GET", "/", &[("Host", &evil_host)], b"");
    assert_eq!(
        st, 403,
        "the UI itself is not served to a foreign Host either"
    );

    // Cross-origin: refused outright, and no CORS header ever grants a foreign page access.
    let before = log_len(&ws);
    let set = br#"{"fields":{"address":"10.6.6.6"}}"#;
    for extra in [
        ("Origin", "http://evil.example"),
        ("Origin", "null"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let (st, hs, _) = http(
            &base,
            "POST",
            "/api/assets/RTU-7/fields",
            &[auth, extra, ("Content-Type", "application/json")],
            set,
        );
        assert_eq!(st, 403, "{extra:?}");
        assert!(!hs.iter().any(|(k, _)| k.starts_with("access-control-")));
    }
    let (st, hs, _) = http(
        &base,
        "OPTIONS",
        "/api/assets/RTU-7/fields",
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(st, 403);
    assert!(!hs.iter().any(|(k, _)| k.starts_with("access-control-")));
    assert_eq!(log_len(&ws), before, "a refused request wrote an event");
    assert!(!ws.ok(&["asset", "show", "RTU-7"]).contains("10.6.6.6"));

    // The page's own origin is fine.
    let own = base.clone();
    let (st, _, _) = http(&base, "GET", "/api/info", &[auth, ("Origin", &own)], b"");
    assert_eq!(st, 200);
}

#[test]
fn feed_blobs_live_updates_and_node_signed_writes() {
    let ws = workspace();
    let (_server, _, url) = ws.serve_web();
    let (base, token) = split_url(&url);
    let bearer = format!("Bearer {token}");
    let auth = ("Authorization", bearer.as_str());

    // The feed, two events a page, resumed by cursor: every logged event, once, as signed.
    let mut cursor: Option<u64> = None;
    let mut ids = Vec::new();
    let mut blob = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/api/events?after={c}&limit=2"),
            None => "/api/events?limit=2".to_string(),
        };
        let (st, _, body) = http(&base, "GET", &path, &[auth], b"");
        assert_eq!(st, 200);
        if body.is_empty() {
            break;
        }
        let mut rest = &body[..];
        let mut n = 0;
        while !rest.is_empty() {
            let pos = u64::from_le_bytes(rest[..8].try_into().unwrap());
            let len = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
            let ev = Event::decode(rest[12..12 + len].to_vec()).unwrap();
            assert!(
                ev.verify_signature(),
                "the feed serves the stored, signed bytes"
            );
            if let Ok(b) = ev.body()
                && let Some((id, _, _)) = b.blobs().into_iter().next()
            {
                blob = Some(id);
            }
            ids.push(ev.id().to_hex());
            assert!(cursor.is_none_or(|c| pos > c), "positions increase");
            cursor = Some(pos);
            rest = &rest[12 + len..];
            n += 1;
        }
        assert!(n <= 2, "a page respects its limit");
    }
    let log: serde_json::Value = serde_json::from_str(&ws.ok(&["audit", "log", "--json"])).unwrap();
    let mut want: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_string())
        .collect();
    let mut got = ids.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    // Blob plaintext, streamed; a malformed or unknown id is a clear 4xx.
    let blob = blob.expect("the commit references a blob");
    let (st, _, body) = http(
        &base,
        "GET",
        &format!("/api/blobs/{}", blob.to_hex()),
        &[auth],
        b"",
    );
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).contains("web-api-blob"));
    let (st, _, _) = http(&base, "GET", "/api/blobs/xyz", &[auth], b"");
    assert_eq!(st, 400);
    let (st, _, _) = http(
        &base,
        "GET",
        &format!("/api/blobs/{}", "0".repeat(64)),
        &[auth],
        b"",
    );
    assert_eq!(st, 404);

    // Live: the stream opens with the current log length.
    let hostport = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /api/live?token={token} HTTP/1.1\r\nHost: {hostport}\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains(&format!("data: {}", ids.len())) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "live stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("event: log"), "{seen}");

    // A write through the API is the CLI's own command, signed by the node's device.
    let (st, _, body) = http(
        &base,
        "POST",
        "/api/assets/RTU-7/fields",
        &[auth, ("Content-Type", "application/json")],
        br#"{"fields":{"address":"10.2.0.7"}}"#,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    assert!(ws.ok(&["asset", "show", "RTU-7"]).contains("10.2.0.7"));
    let (_, _, info) = http(&base, "GET", "/api/info", &[auth], b"");
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    let log: serde_json::Value = serde_json::from_str(&ws.ok(&["audit", "log", "--json"])).unwrap();
    let last = log.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "asset-edited");
    assert!(
        info["device"]
            .as_str()
            .unwrap()
            .starts_with(last["device"].as_str().unwrap()),
        "{last} vs {info}"
    );
    // The live stream announces the new length.
    while !seen.contains(&format!("data: {}", ids.len() + 1)) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "live stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }

    // Bad input: a clear 4xx, nothing written.
    let before = log_len(&ws);
    let cases: [(&str, &str, &[u8], u16); 4] = [
        (
            "/api/assets/NOPE/fields",
            "application/json",
            br#"{"fields":{"address":"1"}}"#,
            422,
        ),
        (
            "/api/assets/RTU-7/fields",
            "application/json",
            b"{not json",
            400,
        ),
        (
            "/api/assets/RTU-7/fields",
            "application/json",
            br#"{"fields":{"address":"1"},"extra":1}"#,
            422,
        ),
        ("/api/assets", "application/json", br#"{"name":"X"}"#, 422),
    ];
    for (path, ct, body, want) in cases {
        let (st, _, resp) = http(&base, "POST", path, &[auth, ("Content-Type", ct)], body);
        assert_eq!(st, want, "{path}: {}", String::from_utf8_lossy(&resp));
        let msg: serde_json::Value = serde_json::from_slice(&resp).unwrap();
        assert!(msg["error"].is_string(), "{path}: {msg}");
    }
    // Path traversal in an uploaded file name.
    let boundary = "XcairnX";
    let form = multipart(&[
        ("message", None, b"evil"),
        ("file", Some("../../escape.xml"), b"<x/>"),
    ]);
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (st, _, resp) = http(
        &base,
        "POST",
        "/api/assets/RTU-7/versions",
        &[auth, ("Content-Type", &ct)],
        &form,
    );
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&resp));
    assert!(String::from_utf8_lossy(&resp).contains("relative"));
    assert!(!ws.dir.join("../escape.xml").exists());
    assert!(!ws.tmp.path().join("escape.xml").exists());
    assert_eq!(log_len(&ws), before, "bad input wrote an event");
    // No upload scratch directory is left behind.
    assert!(std::fs::read_dir(&ws.dir).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("upload-")
    }));

    // One stored path given twice (a second part would silently replace the first).
    let form = multipart(&[
        ("file", Some("cfg/rtu.xml"), b"<a/>"),
        ("file", Some("cfg/rtu.xml"), b"<b/>"),
    ]);
    let (st, _, resp) = http(
        &base,
        "POST",
        "/api/assets/RTU-7/versions",
        &[auth, ("Content-Type", &ct)],
        &form,
    );
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&resp));
    assert!(String::from_utf8_lossy(&resp).contains("twice"));
    assert_eq!(log_len(&ws), before, "a doubled name wrote an event");

    // A good upload commits one version with the stored path the browser sent.
    let form = multipart(&[
        ("message", None, b"from the browser"),
        ("file", Some("cfg/rtu.xml"), b"<rtu addr=\"8\"/>\n"),
    ]);
    let (st, _, resp) = http(
        &base,
        "POST",
        "/api/assets/RTU-7/versions",
        &[auth, ("Content-Type", &ct)],
        &form,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
    let log = ws.ok(&["log", "RTU-7", "--json"]);
    assert!(log.contains("from the browser"), "{log}");
    assert!(log.contains("cfg/rtu.xml"), "{log}");

    // A zip export unpacks into one version; a zip whose entry climbs out is refused whole.
    for (entries, want) in [
        (vec![("../escape.txt", "x"), ("ok.txt", "y")], 400),
        (
            vec![("plc/Controller.L5X", "<a/>"), ("plc/notes.txt", "n")],
            200,
        ),
    ] {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in &entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data.as_bytes()).unwrap();
        }
        let z = w.finish().unwrap().into_inner();
        let mut form = Vec::new();
        form.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\nzip export\r\n").as_bytes(),
        );
        form.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"zip\"; filename=\"export.zip\"\r\nContent-Type: application/zip\r\n\r\n").as_bytes(),
        );
        form.extend_from_slice(&z);
        form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let before = log_len(&ws);
        let (st, _, resp) = http(
            &base,
            "POST",
            "/api/assets/RTU-7/versions",
            &[auth, ("Content-Type", &ct)],
            &form,
        );
        assert_eq!(st, want, "{}", String::from_utf8_lossy(&resp));
        assert_eq!(log_len(&ws), before + usize::from(want == 200));
    }
    let log = ws.ok(&["log", "RTU-7", "--json"]);
    assert!(
        log.contains("plc/Controller.L5X") && log.contains("plc/notes.txt"),
        "{log}"
    );
    assert!(!log.contains("escape.txt"));
}

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .map(|e| {
                let p = e.path();
                if p.is_dir() { files_under(&p) } else { 1 }
            })
            .sum()
    })
}

/// A viewer's node may not write: its API answers 403 for every write, and an upload (a
/// version, a firmware image) is refused before any of it is stored, so a viewer cannot fill
/// its own disk, or leave orphaned blobs, with content it was never allowed to commit.
#[test]
fn a_viewer_nodes_api_refuses_writes_and_stores_no_upload() {
    let alice = workspace();
    let (_alice_node, _, _) = alice.serve_web();
    let ticket = alice.ok(&["device", "invite", "--role", "viewer", "--expires", "1h"]);
    let viewer = Ws::new();
    let out = viewer.ok(&[
        "join",
        ticket.trim(),
        "--device-name",
        "vera",
        "--bind",
        "127.0.0.1:0",
    ]);
    assert!(out.contains("joined as viewer"), "{out}");
    let (_node, _, url) = viewer.serve_web();
    let (base, token) = split_url(&url);
    let bearer = format!("Bearer {token}");
    let auth = ("Authorization", bearer.as_str());
    let before = (log_len(&viewer), files_under(&viewer.dir.join("blobs")));

    let json = ("Content-Type", "application/json");
    let (st, _, resp) = http(
        &base,
        "POST",
        "/api/assets/RTU-7/fields",
        &[auth, json],
        br#"{"fields":{"address":"10.9.9.9"}}"#,
    );
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&resp));
    let boundary = "XcairnX";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\nsneaky\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{}\r\n--{boundary}--\r\n",
        "x".repeat(100_000)
    );
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (st, _, resp) = http(
        &base,
        "POST",
        "/api/assets/RTU-7/versions",
        &[auth, ("Content-Type", &ct)],
        form.as_bytes(),
    );
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&resp));
    let msg: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert!(msg["error"].as_str().unwrap().contains("viewer"), "{msg}");
    // Refused before the body is read: a part that would be unpacked (here not even a zip,
    // which a read would answer with 400) gets the viewer's 403, so no zip is ever unpacked
    // to disk for a device that may not commit it.
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"zip\"; filename=\"e.zip\"\r\n\
         Content-Type: application/zip\r\n\r\nnot a zip\r\n--{boundary}--\r\n"
    );
    let (st, _, resp) = http(
        &base,
        "POST",
        "/api/assets/RTU-7/versions",
        &[auth, ("Content-Type", &ct)],
        form.as_bytes(),
    );
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&resp));
    let (st, _, resp) = http(
        &base,
        "POST",
        "/api/assets/RTU-7/firmware?file_name=fw.bin",
        &[auth, ("Content-Type", "application/octet-stream")],
        &vec![0x5a; 200_000],
    );
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&resp));
    // The firmware route too checks the device before the name and the body: an empty image
    // with a refused name still gets the viewer's 403 (the old order answered 400).
    let (st, _, resp) = http(
        &base,
        "POST",
        "/api/assets/RTU-7/firmware?file_name=..%2Ffw.bin",
        &[auth, ("Content-Type", "application/octet-stream")],
        b"",
    );
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(
        (log_len(&viewer), files_under(&viewer.dir.join("blobs"))),
        before,
        "a refused write left an event or a blob behind"
    );
}

//! Uploads: a version's files (a folder, files or a zip export) and firmware images, written
//! to a private scratch directory and committed through `cairn_app`.

use axum::extract::{Multipart, Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cairn_app::firmware::{AddFirmware, FirmwareOpError};
use cairn_app::versions;
use cairn_firmware::Scanner;

use super::writes::write;
use super::{Api, MAX_UPLOAD, MAX_ZIP_ENTRIES, error};

/// A stored path from an upload: relative, no `..`, no root, no empty or `.` components.
pub(super) fn safe_relative(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if name.is_empty() || name.contains('\0') || name.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Why an upload is refused: the status and the message for [`error`].
type Refusal = (StatusCode, String);

/// Where one upload's files go, and what it may still write: one byte budget and one set of
/// names across all its parts (files and zips alike), so neither many small zips nor a name
/// given twice gets past what one upload may hold.
struct Scratch<'a> {
    root: &'a Path,
    budget: u64,
    names: std::collections::HashSet<PathBuf>,
}

impl<'a> Scratch<'a> {
    fn new(root: &'a Path) -> Scratch<'a> {
        Scratch {
            root,
            budget: MAX_UPLOAD as u64,
            names: Default::default(),
        }
    }
}

/// Writes one uploaded file under the scratch root at the stored path `name`, refusing
/// anything that would leave the root, a name already written, and bytes past the budget.
fn write_upload(to: &mut Scratch<'_>, name: &str, data: &[u8]) -> Result<(), Refusal> {
    let Some(rel) = safe_relative(name) else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("refused file name {name:?}: stored paths must be relative, without `..`"),
        ));
    };
    if data.len() as u64 > to.budget {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("the upload holds more than {MAX_UPLOAD} bytes of files"),
        ));
    }
    if to.names.len() >= cairn_core::domain::MAX_FILES_PER_VERSION {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "the upload holds more than {} files",
                cairn_core::domain::MAX_FILES_PER_VERSION
            ),
        ));
    }
    if !to.names.insert(rel.clone()) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("the upload names {name:?} twice"),
        ));
    }
    to.budget -= data.len() as u64;
    let path = to.root.join(&rel);
    path.parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        // A new file only: on a case-insensitive file system two names can be one file.
        .and_then(|()| {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?
                .write_all(data)
        })
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("upload: {e}")))
}

/// Unpacks a zip export into the scratch directory: every entry name checked like an uploaded
/// file name, at most [`MAX_ZIP_ENTRIES`] entries, and the bytes unpacked counted against the
/// upload's budget (a zip bomb is refused, not written). Returns the number of files.
fn unpack_zip(to: &mut Scratch<'_>, data: &[u8]) -> Result<usize, Refusal> {
    use std::io::Read;
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(data))
        .map_err(|e| bad(format!("not a readable zip: {e}")))?;
    if zip.len() > MAX_ZIP_ENTRIES {
        return Err(bad(format!(
            "the zip holds {} entries (at most {MAX_ZIP_ENTRIES})",
            zip.len()
        )));
    }
    let mut files = 0;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("zip entry {i}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry
            .name()
            .map_err(|e| bad(format!("zip entry {i}: name: {e}")))?
            .to_string();
        let mut buf = Vec::new();
        (&mut entry)
            .take(to.budget + 1)
            .read_to_end(&mut buf)
            .map_err(|e| bad(format!("zip entry {name:?}: {e}")))?;
        write_upload(to, &name, &buf)?;
        files += 1;
    }
    Ok(files)
}

/// A version upload: multipart with `message`, optional `branch`, and `file` parts whose file
/// names are the stored paths (a folder upload sends `dir/sub/file`) and/or `zip` parts (a zip
/// export, unpacked). Written to a private temp directory, then committed as one version by
/// `versions::commit`.
pub(super) async fn version_upload(
    State(api): State<Arc<Api>>,
    UrlPath(asset): UrlPath<String>,
    mut form: Multipart,
) -> Response {
    if let Err(r) = may_write(&api).await {
        return r;
    }
    let tmp = match tempdir_in(&api.dir) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut message = None;
    let mut branch = None;
    let mut files = 0usize;
    let mut scratch = Scratch::new(tmp.path());
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("upload: {e}")),
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let data = match field.bytes().await {
            Ok(d) => d,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("upload: {e}")),
        };
        match name.as_str() {
            "message" => message = Some(String::from_utf8_lossy(&data).into_owned()),
            "branch" => branch = Some(String::from_utf8_lossy(&data).into_owned()),
            "file" => {
                if let Err((st, m)) =
                    write_upload(&mut scratch, file_name.as_deref().unwrap_or(""), &data)
                {
                    return error(st, m);
                }
                files += 1;
            }
            "zip" => match unpack_zip(&mut scratch, &data) {
                Ok(n) => files += n,
                Err((st, m)) => return error(st, m),
            },
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unexpected form field {other:?}"),
                );
            }
        }
    }
    if files == 0 {
        return error(StatusCode::BAD_REQUEST, "no files in the upload");
    }
    let req = versions::Commit {
        asset,
        branch: branch.unwrap_or_else(|| "main".into()),
        message: message.unwrap_or_default(),
        paths: vec![tmp.path().to_path_buf()],
        stored_as: None,
    };
    write(&api, "commit", tmp, move |s| versions::commit(s, &req, &())).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FirmwareQuery {
    file_name: String,
    version: Option<String>,
    label: Option<String>,
}

/// A firmware upload: the image as the raw body; its name and version in the query. The
/// device's right to write is checked before the body is read, and the body is streamed to
/// the scratch file (at most [`MAX_UPLOAD`] bytes), never held whole in memory.
pub(super) async fn firmware_upload(
    State(api): State<Arc<Api>>,
    UrlPath(asset): UrlPath<String>,
    Query(q): Query<FirmwareQuery>,
    body: axum::body::Body,
) -> Response {
    if let Err(r) = may_write(&api).await {
        return r;
    }
    let Some(rel) = safe_relative(&q.file_name).filter(|p| p.components().count() == 1) else {
        return error(StatusCode::BAD_REQUEST, "refused file name");
    };
    let tmp = match tempdir_in(&api.dir) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let path = tmp.path().join(rel);
    match stream_to_file(body, &path).await {
        Ok(0) => return error(StatusCode::BAD_REQUEST, "the image is empty"),
        Ok(_) => {}
        Err((st, m)) => return error(st, m),
    }
    let req = AddFirmware {
        asset,
        file: path,
        version: q.version.filter(|v| !v.is_empty()),
        label: q.label.filter(|v| !v.is_empty()),
        max_size: MAX_UPLOAD as u64,
    };
    write(&api, "firmware add", tmp, move |s| {
        let scanner = Scanner::new().map_err(FirmwareOpError::from)?;
        cairn_app::firmware::add(s, &scanner, &req, &())
    })
    .await
}

/// Writes a request body to `path` as it arrives, refusing more than [`MAX_UPLOAD`] bytes.
/// Returns the number of bytes written.
async fn stream_to_file(body: axum::body::Body, path: &Path) -> Result<u64, Refusal> {
    use futures_lite::StreamExt;
    use tokio::io::AsyncWriteExt;
    let failed = |e: std::io::Error| (StatusCode::INTERNAL_SERVER_ERROR, format!("upload: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(failed)?;
    let mut chunks = body.into_data_stream();
    let mut n = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the upload broke off: {e}"),
            )
        })?;
        n += chunk.len() as u64;
        if n > MAX_UPLOAD as u64 {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the image is larger than {MAX_UPLOAD} bytes"),
            ));
        }
        file.write_all(&chunk).await.map_err(failed)?;
    }
    file.flush().await.map_err(failed)?;
    Ok(n)
}

/// Refuses an upload from a device that may not write before anything is written to disk
/// (a viewer's or revoked device's node would otherwise store the files, then answer 403).
/// The store is locked on a blocking thread: a long write may hold it.
async fn may_write(api: &Api) -> Result<(), Response> {
    let store = api.node.store.clone();
    match super::blocking(move || cairn_app::may_write(&store.lock())).await? {
        Ok(()) => Ok(()),
        Err(e) => Err(error(
            super::writes::status_of(cairn_app::OpError::fault(&e)),
            e.to_string(),
        )),
    }
}

/// A private scratch directory inside the data directory (same file system as the blobs),
/// removed when the request ends.
fn tempdir_in(dir: &Path) -> std::io::Result<TempDir> {
    let p = dir.join(format!(
        "upload-{}",
        hex::encode(cairn_store::seal::random::<8>())
    ));
    let mut dir = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(&p)?;
    Ok(TempDir(p))
}

struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::safe_relative;
    use std::path::PathBuf;

    #[test]
    fn upload_names_stay_inside_the_upload() {
        assert_eq!(safe_relative("a/b.xml"), Some(PathBuf::from("a/b.xml")));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./",
            "a\\..\\x",
            "x\0y",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad:?}");
        }
    }
}

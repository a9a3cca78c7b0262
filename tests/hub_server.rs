//! A small Hugging Face Hub on 127.0.0.1 for the hub tests: the URL layout,
//! headers and redirects hf-hub's blocking client relies on, plus faults.
//!
//! - `GET /api/models/{owner}/{name}/revision/{rev}` lists a commit's files
//!   with sizes and LFS SHA-256s. A missing repo is 401 with
//!   `X-Error-Code: RepoNotFound` (what the real Hub answers without a token),
//!   a missing revision 404 with `RevisionNotFound`.
//! - `GET /{owner}/{name}/resolve/{rev}/{file}` is a 302 to a CDN URL with
//!   `X-Repo-Commit`, `X-Linked-Etag` (the SHA-256) and `X-Linked-Size`, as for
//!   LFS files on the real Hub.
//! - `GET /cdn/{owner}/{name}/{commit}/{file}` serves the bytes, honouring
//!   `Range: bytes=a-b` / `bytes=a-` with 206 and `Content-Range`.
//!
//! One thread accepts, one thread per connection answers; every answer
//! closes its connection. The server stops when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// A commit id made from a number.
pub fn commit(n: u32) -> String {
    format!("{n:040x}")
}

/// How a file's transfers misbehave.
#[derive(Clone, Debug, Default)]
pub enum Fault {
    /// Served as listed.
    #[default]
    None,
    /// The first `n` body transfers send half the bytes after promising all
    /// of them, then close the connection.
    Truncate(Arc<AtomicUsize>),
    /// Every body transfer sends half the bytes without a Content-Length, so
    /// the client cannot tell it was cut short.
    ShortWithoutLength,
    /// The bytes served differ from the listed SHA-256 (same length).
    Corrupt,
    /// `resolve` answers 302 without a `Location` header.
    RedirectWithoutLocation,
}

impl Fault {
    pub fn truncate_first(n: usize) -> Self {
        Self::Truncate(Arc::new(AtomicUsize::new(n)))
    }
}

/// One file of a commit.
#[derive(Clone, Debug)]
pub struct FakeFile {
    pub name: String,
    pub bytes: Arc<Vec<u8>>,
    pub sha256: String,
    pub fault: Fault,
}

impl FakeFile {
    pub fn new(name: &str, bytes: Vec<u8>) -> Self {
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            name: name.to_owned(),
            bytes: Arc::new(bytes),
            sha256,
            fault: Fault::None,
        }
    }

    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }
}

#[derive(Debug, Default)]
struct FakeRepo {
    /// Branch or tag name -> commit.
    refs: HashMap<String, String>,
    /// Commit -> files.
    commits: HashMap<String, Vec<FakeFile>>,
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    repos: Mutex<HashMap<String, FakeRepo>>,
    log: Mutex<Vec<Logged>>,
}

/// The running server.
#[derive(Debug)]
pub struct HubServer {
    addr: SocketAddr,
    state: Arc<State>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HubServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stopping) = (Arc::clone(&state), Arc::clone(&stopping));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || {
                        let _ = serve(&state, addr, stream);
                    });
                }
            })
        };
        Self {
            addr,
            state,
            stopping,
            thread: Some(thread),
        }
    }

    /// The endpoint to give hf-hub.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds (or extends) a repo: `commit` holds `files`, and each ref points to it.
    pub fn add_commit(&self, repo: &str, refs: &[&str], commit: &str, files: Vec<FakeFile>) {
        let mut repos = self.state.repos.lock().unwrap();
        let entry = repos.entry(repo.to_owned()).or_default();
        for r in refs {
            entry.refs.insert((*r).to_owned(), commit.to_owned());
        }
        entry.commits.insert(commit.to_owned(), files);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    /// Stops accepting; afterwards connections are refused.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopping.store(true, Ordering::SeqCst);
            // Wake the accept loop so it sees the flag and drops the listener.
            let _ = TcpStream::connect(self.addr);
            let _ = thread.join();
        }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Response {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Bytes of `body` to actually send before closing (a cut transfer).
    send: Option<usize>,
    /// Whether to announce `Content-Length`.
    length: bool,
}

impl Response {
    fn new(status: &'static str, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            send: None,
            length: true,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn error(status: &'static str, code: &str) -> Self {
        Self::new(status, format!("{{\"error\":\"{code}\"}}").into_bytes())
            .header("X-Error-Code", code)
            .header("Content-Type", "application/json")
    }
}

fn serve(state: &State, addr: SocketAddr, stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    state.log.lock().unwrap().push(Logged {
        path: path.clone(),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
    });
    let response = route(state, addr, &path, headers.get("range").map(String::as_str));
    write(stream, response)
}

fn write(mut stream: TcpStream, r: Response) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {}\r\nConnection: close\r\n", r.status);
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if r.length {
        head.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let send = r.send.unwrap_or(r.body.len()).min(r.body.len());
    stream.write_all(&r.body[..send])?;
    stream.flush()?;
    stream.shutdown(Shutdown::Both)
}

fn route(state: &State, addr: SocketAddr, path: &str, range: Option<&str>) -> Response {
    let path = path.split('?').next().unwrap_or("");
    let parts: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|p| p.replace("%2F", "/"))
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let repos = state.repos.lock().unwrap();
    match parts.as_slice() {
        ["api", "models", owner, name, "revision", rev] => {
            let repo_id = format!("{owner}/{name}");
            let Some(repo) = repos.get(&repo_id) else {
                return Response::error("401 Unauthorized", "RepoNotFound");
            };
            let Some((commit, files)) = lookup(repo, rev) else {
                return Response::error("404 Not Found", "RevisionNotFound");
            };
            let siblings: Vec<serde_json::Value> = files
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "rfilename": f.name,
                        "size": f.bytes.len(),
                        "blobId": "0".repeat(40),
                        "lfs": { "sha256": f.sha256, "size": f.bytes.len(), "pointerSize": 134 }
                    })
                })
                .collect();
            let body = serde_json::json!({ "id": repo_id, "sha": commit, "siblings": siblings });
            Response::new("200 OK", body.to_string().into_bytes())
                .header("Content-Type", "application/json")
        }
        [owner, name, "resolve", rev, file] => {
            let Some(repo) = repos.get(&format!("{owner}/{name}")) else {
                return Response::error("401 Unauthorized", "RepoNotFound");
            };
            let Some((commit, files)) = lookup(repo, rev) else {
                return Response::error("404 Not Found", "RevisionNotFound");
            };
            let Some(f) = files.iter().find(|f| f.name == *file) else {
                return Response::error("404 Not Found", "EntryNotFound");
            };
            let mut response = Response::new("302 Found", Vec::new());
            if !matches!(f.fault, Fault::RedirectWithoutLocation) {
                response = response.header(
                    "Location",
                    format!("http://{addr}/cdn/{owner}/{name}/{commit}/{file}"),
                );
            }
            response
                .header("X-Repo-Commit", commit)
                .header("X-Linked-Etag", format!("\"{}\"", f.sha256))
                .header("X-Linked-Size", f.bytes.len().to_string())
                .header("ETag", "\"0000000000000000000000000000000000000000\"")
        }
        ["cdn", owner, name, commit, file] => {
            let file = repos
                .get(&format!("{owner}/{name}"))
                .and_then(|r| r.commits.get(*commit))
                .and_then(|files| files.iter().find(|f| f.name == *file));
            match file {
                Some(f) => content(f, range),
                None => Response::error("404 Not Found", "EntryNotFound"),
            }
        }
        _ => Response::error("404 Not Found", "NotFound"),
    }
}

fn lookup<'a>(repo: &'a FakeRepo, rev: &str) -> Option<(&'a str, &'a Vec<FakeFile>)> {
    let commit = repo.refs.get(rev).map_or(rev, String::as_str);
    repo.commits
        .get_key_value(commit)
        .map(|(c, files)| (c.as_str(), files))
}

fn content(f: &FakeFile, range: Option<&str>) -> Response {
    let total = f.bytes.len();
    let mut bytes = f.bytes.to_vec();
    if matches!(f.fault, Fault::Corrupt) {
        if let Some(b) = bytes.get_mut(total / 2) {
            *b ^= 0xff;
        }
    }
    let (start, end) = match range.and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
            let start: usize = a.parse().unwrap_or(0);
            let end: usize = b.parse().map_or(total.saturating_sub(1), |e: usize| {
                e.min(total.saturating_sub(1))
            });
            (start, end)
        }
        None => (0, total.saturating_sub(1)),
    };
    if start >= total {
        return Response::new("416 Range Not Satisfiable", Vec::new())
            .header("Content-Range", format!("bytes */{total}"));
    }
    let body = bytes[start..=end].to_vec();
    let is_probe = body.len() <= 1;
    let mut response = if range.is_some() {
        Response::new("206 Partial Content", body)
            .header("Content-Range", format!("bytes {start}-{end}/{total}"))
    } else {
        Response::new("200 OK", body)
    };
    response = response.header("ETag", format!("\"{}\"", f.sha256));
    if !is_probe {
        match &f.fault {
            Fault::Truncate(left) => {
                let cut = left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if cut {
                    response.send = Some(response.body.len() / 2);
                }
            }
            Fault::ShortWithoutLength => {
                response.send = Some(response.body.len() / 2);
                response.length = false;
            }
            Fault::None | Fault::Corrupt | Fault::RedirectWithoutLocation => {}
        }
    }
    response
}

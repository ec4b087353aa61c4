//! The `kv` role: a key-value store spoken over TCP one line at a time, kept in one file under
//! the data directory so that its contents outlive the container (when that is a volume).
//!
//! Protocol: one command per line, one reply line per command.
//!
//! | command         | reply                                        |
//! |-----------------|----------------------------------------------|
//! | `PING`          | `PONG`                                       |
//! | `GET key`       | `OK value`, or `NIL` when the key is missing |
//! | `SET key value` | `OK` (the value is the rest of the line)     |
//! | `INCR key`      | `OK n` (a missing key counts as 0)           |
//! | anything else   | `ERR message`                                |

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::net;

const DATA_FILE: &str = "kv.db";
const MAX_LINE: usize = 64 * 1024;
/// How long a silent client keeps its connection (and thread).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Config {
    pub port: u16,
    pub data: PathBuf,
}

pub fn run(config: Config) -> io::Result<()> {
    let store = Store::open(&config.data)?;
    let listener = TcpListener::bind(("0.0.0.0", config.port))?;
    eprintln!(
        "kv: listening on port {}, data in {}, keys: {}",
        config.port,
        store.file.display(),
        store.entries.len()
    );
    serve(listener, Arc::new(Mutex::new(store)));
    Ok(())
}

/// Serves clients of `listener` forever, one thread per connection.
pub fn serve(listener: TcpListener, store: Arc<Mutex<Store>>) {
    net::serve_forever(listener, "kv", move |stream| {
        serve_connection(stream, &store)
    });
}

fn serve_connection(stream: TcpStream, store: &Mutex<Store>) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    while net::read_line(&mut reader, &mut line, MAX_LINE)? {
        let reply = store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .execute(&line);
        // One write per line: written in pieces, Nagle's algorithm would hold the newline
        // back until the peer's delayed acknowledgement.
        writer.write_all(format!("{reply}\n").as_bytes())?;
    }
    Ok(())
}

/// The keys and values, and the file they are saved to after every change.
#[derive(Debug)]
pub struct Store {
    entries: BTreeMap<String, String>,
    file: PathBuf,
}

impl Store {
    /// Opens the store kept in `dir`, creating the directory if needed.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        let file = dir.join(DATA_FILE);
        let entries = match fs::read_to_string(&file) {
            Ok(text) => parse_entries(&text).map_err(|message| {
                let message = format!("{}: {message}", file.display());
                io::Error::new(io::ErrorKind::InvalidData, message)
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(error),
        };
        Ok(Store { entries, file })
    }

    /// Runs one protocol command and returns the reply line.
    pub fn execute(&mut self, line: &str) -> String {
        let (command, rest) = split_word(line.trim());
        let (key, value) = split_word(rest);
        let reply = match (command.to_ascii_uppercase().as_str(), key, value) {
            ("PING", "", "") => Ok("PONG".to_owned()),
            ("GET", key, "") if !key.is_empty() => Ok(match self.entries.get(key) {
                Some(value) => format!("OK {value}"),
                None => "NIL".to_owned(),
            }),
            ("SET", key, value) if !key.is_empty() && !value.is_empty() => {
                self.write(key, value.to_owned()).map(|()| "OK".to_owned())
            }
            ("INCR", key, "") if !key.is_empty() => self.increment(key).map(|n| format!("OK {n}")),
            ("PING" | "GET" | "SET" | "INCR", ..) => Err(format!("usage: {}", usage(command))),
            _ => Err(format!("unknown command '{command}'")),
        };
        reply.unwrap_or_else(|message| format!("ERR {message}"))
    }

    fn increment(&mut self, key: &str) -> Result<i64, String> {
        let current = match self.entries.get(key) {
            Some(value) => value
                .parse::<i64>()
                .map_err(|_| "value is not an integer".to_owned())?,
            None => 0,
        };
        let next = current
            .checked_add(1)
            .ok_or_else(|| "increment would overflow".to_owned())?;
        self.write(key, next.to_string())?;
        Ok(next)
    }

    /// Sets `key` and saves the store; on a failed save the change is undone, so that what
    /// clients read is always what a restart would load.
    fn write(&mut self, key: &str, value: String) -> Result<(), String> {
        let previous = self.entries.insert(key.to_owned(), value);
        let saved = self.save();
        if let Err(error) = saved {
            match previous {
                Some(previous) => self.entries.insert(key.to_owned(), previous),
                None => self.entries.remove(key),
            };
            return Err(format!("cannot save {}: {error}", self.file.display()));
        }
        Ok(())
    }

    /// Writes a temporary file and renames it over the data file: a crash mid-write leaves
    /// the previous contents intact.
    fn save(&self) -> io::Result<()> {
        let temporary = self.file.with_extension("tmp");
        let mut out = io::BufWriter::new(fs::File::create(&temporary)?);
        for (key, value) in &self.entries {
            writeln!(out, "{key} {value}")?;
        }
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()?;
        fs::rename(&temporary, &self.file)
    }
}

fn usage(command: &str) -> &'static str {
    match command.to_ascii_uppercase().as_str() {
        "PING" => "PING",
        "GET" => "GET key",
        "SET" => "SET key value",
        _ => "INCR key",
    }
}

/// Splits off the first whitespace-separated word: `("SET", "k v")` from `"SET k v"`.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

/// Reads the data file: one `key value` pair per line.
fn parse_entries(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.lines()
        .enumerate()
        .map(|(index, line)| match line.split_once(' ') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(format!("line {}: expected 'key value'", index + 1)),
        })
        .collect()
}

/// A connection to a kv store.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<Client> {
        let writer = net::connect(addr, timeout)?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(Client { reader, writer })
    }

    pub fn ping(&mut self) -> io::Result<()> {
        match self.call("PING")?.as_str() {
            "PONG" => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub fn get(&mut self, key: &str) -> io::Result<Option<String>> {
        let reply = self.call(&format!("GET {key}"))?;
        match reply.strip_prefix("OK ") {
            Some(value) => Ok(Some(value.to_owned())),
            None if reply == "NIL" => Ok(None),
            None => Err(unexpected(&reply)),
        }
    }

    pub fn incr(&mut self, key: &str) -> io::Result<i64> {
        let reply = self.call(&format!("INCR {key}"))?;
        reply
            .strip_prefix("OK ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| unexpected(&reply))
    }

    fn call(&mut self, command: &str) -> io::Result<String> {
        self.writer.write_all(format!("{command}\n").as_bytes())?;
        let mut reply = String::new();
        if !net::read_line(&mut self.reader, &mut reply, MAX_LINE)? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "kv closed the connection",
            ));
        }
        Ok(reply.trim_end().to_owned())
    }
}

fn unexpected(reply: &str) -> io::Error {
    io::Error::other(format!("unexpected kv reply: {reply}"))
}

/// Test helpers shared with the roles that talk to a kv store.
#[cfg(test)]
pub mod testing {
    use super::*;
    use std::thread;

    /// A fresh directory under the system's temporary directory, removed on drop.
    #[derive(Debug)]
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("demo-app-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Starts a server with an empty store on a free local port. Returns its address and
    /// the store's directory, which lives as long as the returned guard.
    pub fn start_server(name: &str) -> (String, TempDir) {
        let dir = TempDir::new(name);
        let store = Arc::new(Mutex::new(Store::open(&dir.0).unwrap()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || serve(listener, store));
        (addr, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{TempDir, start_server};
    use super::*;

    #[test]
    fn commands_read_and_change_the_store() {
        let dir = TempDir::new("commands");
        let mut store = Store::open(&dir.0).unwrap();
        assert_eq!(store.execute("PING"), "PONG");
        assert_eq!(store.execute("GET colour"), "NIL");
        assert_eq!(store.execute("SET colour dark  blue"), "OK");
        assert_eq!(store.execute("get colour\r\n"), "OK dark  blue");
        assert_eq!(store.execute("INCR hits"), "OK 1");
        assert_eq!(store.execute("INCR hits"), "OK 2");
        assert_eq!(store.execute("INCR colour"), "ERR value is not an integer");
    }

    #[test]
    fn malformed_commands_get_an_error_reply() {
        let dir = TempDir::new("malformed");
        let mut store = Store::open(&dir.0).unwrap();
        assert_eq!(store.execute("DEL k"), "ERR unknown command 'DEL'");
        assert_eq!(store.execute("SET k"), "ERR usage: SET key value");
        assert_eq!(store.execute("GET"), "ERR usage: GET key");
        assert_eq!(store.execute("INCR a b"), "ERR usage: INCR key");
        assert_eq!(store.execute(""), "ERR unknown command ''");
    }

    #[test]
    fn increments_stop_at_the_largest_integer() {
        let dir = TempDir::new("overflow");
        let mut store = Store::open(&dir.0).unwrap();
        store.execute(&format!("SET n {}", i64::MAX));
        assert_eq!(store.execute("INCR n"), "ERR increment would overflow");
        assert_eq!(store.execute("GET n"), format!("OK {}", i64::MAX));
    }

    #[test]
    fn contents_survive_a_reopen() {
        let dir = TempDir::new("reopen");
        let mut store = Store::open(&dir.0).unwrap();
        store.execute("INCR hits");
        store.execute("SET greeting hello world");
        let mut reopened = Store::open(&dir.0).unwrap();
        assert_eq!(reopened.execute("GET hits"), "OK 1");
        assert_eq!(reopened.execute("GET greeting"), "OK hello world");
        assert!(!dir.0.join("kv.tmp").exists());
    }

    #[test]
    fn a_failed_save_undoes_the_change() {
        let dir = TempDir::new("failed-save");
        let mut store = Store::open(&dir.0).unwrap();
        store.execute("SET k before");
        // A directory where the temporary file should go makes every save fail.
        fs::create_dir(dir.0.join("kv.tmp")).unwrap();
        assert!(store.execute("SET k after").starts_with("ERR cannot save"));
        assert!(store.execute("INCR n").starts_with("ERR cannot save"));
        assert_eq!(store.execute("GET k"), "OK before");
        assert_eq!(store.execute("GET n"), "NIL");
    }

    #[test]
    fn a_corrupt_data_file_is_reported_with_its_line() {
        let dir = TempDir::new("corrupt");
        fs::create_dir_all(&dir.0).unwrap();
        fs::write(dir.0.join(DATA_FILE), "a 1\nnospace\n").unwrap();
        let error = Store::open(&dir.0).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error.to_string().ends_with("line 2: expected 'key value'"),
            "{error}"
        );
    }

    #[test]
    fn clients_talk_to_the_server_over_tcp() {
        let (addr, _dir) = start_server("server");

        let mut client = Client::connect(&addr, Duration::from_secs(5)).unwrap();
        client.ping().unwrap();
        assert_eq!(client.get("ticks").unwrap(), None);
        assert_eq!(client.incr("ticks").unwrap(), 1);
        let mut second = Client::connect(&addr, Duration::from_secs(5)).unwrap();
        assert_eq!(second.incr("ticks").unwrap(), 2);
        assert_eq!(client.get("ticks").unwrap(), Some("2".to_owned()));
    }
}

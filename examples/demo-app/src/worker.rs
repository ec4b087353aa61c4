//! The `worker` role: a background job that increments the `ticks` counter in the kv store
//! at a fixed interval and logs it. It keeps going while the store is away.

use std::io;
use std::thread;
use std::time::Duration;

use crate::kv;

const COUNTER: &str = "ticks";

#[derive(Debug)]
pub struct Config {
    /// The kv store's `host:port`.
    pub db: String,
    pub interval: Duration,
}

pub fn run(config: Config) -> ! {
    eprintln!(
        "worker: incrementing '{COUNTER}' in kv at {} every {:?}",
        config.db, config.interval
    );
    loop {
        match tick(&config.db, config.interval) {
            Ok(ticks) => eprintln!("worker: {COUNTER} = {ticks}"),
            Err(error) => eprintln!("worker: kv at {} unavailable: {error}", config.db),
        }
        thread::sleep(config.interval);
    }
}

/// One increment over a fresh connection, so that a restarted kv store is found again.
fn tick(db: &str, timeout: Duration) -> io::Result<i64> {
    kv::Client::connect(db, timeout.max(Duration::from_secs(1)))?.incr(COUNTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn each_tick_increments_the_counter() {
        let (addr, _dir) = kv::testing::start_server("worker");
        let interval = Duration::from_millis(10);
        assert_eq!(tick(&addr, interval).unwrap(), 1);
        assert_eq!(tick(&addr, interval).unwrap(), 2);
    }

    #[test]
    fn a_missing_store_is_an_error_not_a_crash() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert!(tick(&addr, Duration::from_millis(10)).is_err());
    }
}

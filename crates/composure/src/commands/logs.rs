//! `composure logs`: the containers' output, merged, each line prefixed by its replica.

use std::process::ExitCode;

use composure_api::LogsQuery;
use futures_util::StreamExt;

use crate::cli::{GlobalArgs, LogsArgs};
use crate::commands::{client, project};
use crate::output;

pub async fn run(global: &GlobalArgs, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let client = client::client(global)?;
    // One service can be asked of the daemon; several are filtered here.
    let service = match args.services.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let since = args
        .since
        .as_deref()
        .map(|text| since_ms(text, now_ms))
        .transpose()?;
    let query = LogsQuery {
        service,
        follow: args.follow,
        tail: args.tail,
        task: None,
        since,
    };
    let mut lines = client.logs(&name, &query).await?;
    let mut prefixes = output::Prefixes::default();
    while let Some(entry) = lines.next().await {
        let entry = entry?;
        if !args.services.is_empty() && !args.services.contains(&entry.service) {
            continue;
        }
        let mut line = String::new();
        if !args.no_log_prefix {
            line.push_str(&prefixes.get(&entry.service, entry.slot));
            line.push(' ');
        }
        if args.timestamps {
            match entry.time {
                Some(ms) => line.push_str(&output::rfc3339(ms)),
                None => line.push('-'),
            }
            line.push(' ');
        }
        out!("{line}{}", entry.line);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--since` as ms since the epoch, read as `docker compose logs --since` reads it: RFC 3339,
/// a Unix time in seconds, or a duration before `now_ms`. Pure.
fn since_ms(text: &str, now_ms: u64) -> anyhow::Result<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs.saturating_mul(1000));
    }
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        let since = time
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| anyhow::anyhow!("--since {text} is before 1970"))?;
        return Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(now_ms.saturating_sub(u64::try_from(ago.as_millis()).unwrap_or(u64::MAX))),
        Err(_) => anyhow::bail!(
            "--since {text}: give an RFC 3339 time (2026-12-04T10:00:00Z), a Unix time in \
             seconds, or a time ago (42m)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_times_unix_seconds_and_durations() {
        let now = 1_709_210_096_000;
        assert_eq!(since_ms("1709210000", now).unwrap(), 1_709_210_000_000);
        assert_eq!(
            since_ms("2024-02-29T12:34:56Z", now).unwrap(),
            1_709_210_096_000
        );
        assert_eq!(since_ms("10m", now).unwrap(), now - 600_000);
        assert_eq!(since_ms("1h30m", now).unwrap(), now - 5_400_000);
        assert!(since_ms("yesterday", now).is_err());
    }
}

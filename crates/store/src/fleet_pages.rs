//! Fleet pages as the SQL backends read them (issue 11, point 1): the database builds a
//! page of hosts as one JSON document (an array of one array per host), so the driver
//! hands over one value per page instead of one row of sixteen columns per host. At
//! 10,000 hosts the per-row cost of the driver was most of a page's time (about 250 ms
//! of the console's 300 ms through `sqlx`'s SQLite worker, for a query SQLite itself
//! runs in 30 ms); JSON decoding of the same bytes takes a few milliseconds.
//!
//! Both backends put the same columns in the same order, so one text decodes both.

use crate::{FleetHost, FleetSummary, HostMarks, HostRecord, HostSigning, KeptSummary};
use crate::{Result, StoreError, StoredVerdict};
use jiff::Timestamp;
use patchday_types::{GroupId, HostId};
use serde::Deserialize;
use std::str::FromStr;

/// The host columns of a [`FleetHost`] page, in this order (the backends' SQL writes
/// them into each host's array): `id, hostname, enrolled_at, last_seen, facts_sha256,
/// public_key, last_sequence, last_signed_at, agent_error, agent_error_at, groups`
/// (space-separated, sorted), `states_mark, inventory_mark, basis, body, summary`.
#[derive(Deserialize)]
struct PageHost(
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The columns of a [`FleetSummary`] page, in this order: `id, hostname, enrolled_at,
/// last_seen, facts_sha256, agent_error, agent_error_at, groups, states_mark,
/// inventory_mark, basis, summary`.
#[derive(Deserialize)]
struct SummaryHost(
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn parse<T: FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(what, e))
}

fn opt_ts(s: Option<&str>) -> Result<Option<Timestamp>> {
    s.map(|s| parse("timestamp", s)).transpose()
}

/// The hosts of a page in host id order (the aggregate's order is not the database's
/// promise; both order text bytewise, as `str` does).
fn in_order<T>(mut v: Vec<T>, id: impl Fn(&T) -> &HostId) -> Vec<T> {
    v.sort_by(|a, b| id(a).cmp(id(b)));
    v
}

fn host_record(
    id: HostId,
    hostname: String,
    enrolled_at: &str,
    last_seen: Option<&str>,
    facts_sha256: Option<String>,
    groups: Option<&str>,
) -> Result<HostRecord> {
    Ok(HostRecord {
        id,
        hostname,
        groups: groups
            .unwrap_or_default()
            .split_whitespace()
            .map(|g| parse("group id", g))
            .collect::<Result<Vec<GroupId>>>()?,
        enrolled_at: parse("timestamp", enrolled_at)?,
        last_seen: opt_ts(last_seen)?,
        facts_sha256,
    })
}

fn agent_error(error: Option<String>, at: Option<&str>) -> Result<Option<(String, Timestamp)>> {
    Ok(match (error, opt_ts(at)?) {
        (Some(e), Some(at)) => Some((e, at)),
        _ => None,
    })
}

/// A [`FleetHost`] page from its JSON document (`None`: an empty page).
pub fn fleet_hosts(page: Option<&str>) -> Result<Vec<FleetHost>> {
    let Some(page) = page else {
        return Ok(Vec::new());
    };
    let rows: Vec<PageHost> = serde_json::from_str(page).map_err(|e| corrupt("a fleet page", e))?;
    let mut out = Vec::with_capacity(rows.len());
    for PageHost(
        id,
        hostname,
        enrolled_at,
        last_seen,
        facts_sha256,
        public_key,
        last_sequence,
        last_signed_at,
        error,
        error_at,
        groups,
        states,
        inventory,
        basis,
        body,
        summary,
    ) in rows
    {
        let id: HostId = parse("host id", &id)?;
        let verdict = match (basis, body) {
            (Some(basis), Some(body)) => Some(StoredVerdict {
                host: id.clone(),
                basis,
                body,
                summary: summary.unwrap_or_default(),
            }),
            _ => None,
        };
        out.push(FleetHost {
            host: host_record(
                id,
                hostname,
                &enrolled_at,
                last_seen.as_deref(),
                facts_sha256,
                groups.as_deref(),
            )?,
            signing: HostSigning {
                public_key,
                last_sequence: u64::try_from(last_sequence)
                    .map_err(|e| corrupt("last_sequence", e))?,
                last_signed_at: opt_ts(last_signed_at.as_deref())?,
                agent_error: agent_error(error, error_at.as_deref())?,
            },
            marks: HostMarks {
                states: states.unwrap_or_default(),
                inventory: inventory.unwrap_or_default(),
            },
            verdict,
        });
    }
    Ok(in_order(out, |f| &f.host.id))
}

/// A [`FleetSummary`] page from its JSON document (`None`: an empty page).
pub fn fleet_summaries(page: Option<&str>) -> Result<Vec<FleetSummary>> {
    let Some(page) = page else {
        return Ok(Vec::new());
    };
    let rows: Vec<SummaryHost> =
        serde_json::from_str(page).map_err(|e| corrupt("a fleet page", e))?;
    let mut out = Vec::with_capacity(rows.len());
    for SummaryHost(
        id,
        hostname,
        enrolled_at,
        last_seen,
        facts_sha256,
        error,
        error_at,
        groups,
        states,
        inventory,
        basis,
        summary,
    ) in rows
    {
        let id: HostId = parse("host id", &id)?;
        out.push(FleetSummary {
            host: host_record(
                id,
                hostname,
                &enrolled_at,
                last_seen.as_deref(),
                facts_sha256,
                groups.as_deref(),
            )?,
            agent_error: agent_error(error, error_at.as_deref())?,
            marks: HostMarks {
                states: states.unwrap_or_default(),
                inventory: inventory.unwrap_or_default(),
            },
            kept: basis.map(|basis| KeptSummary {
                basis,
                summary: summary.unwrap_or_default(),
            }),
        });
    }
    Ok(in_order(out, |f| &f.host.id))
}

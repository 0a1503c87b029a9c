//! Row decoding shared by the SQL backends (issue 12, point 2): SQLite and PostgreSQL
//! store the same columns the same way, so one text decodes both. A macro, not generic
//! functions: each backend expands it for its own row type (`sqlx` is theirs, not this
//! crate's dependency), and the names it uses (`Approval`, `Result`, `Row`, …) resolve
//! in the backend's module, which imports them.

/// Expands the row decoders (`approval_row`, `tenant_from_row`, `token_info_row`, …) and
/// the text helpers (`parse`, `json`, `to_json`, `opt_ts`, `corrupt`) for rows of type
/// `$row` (e.g. `sqlx::postgres::PgRow`).
#[macro_export]
macro_rules! sql_row_decoders {
    ($row:ty) => {
        /// One row of `approvals`.
        fn approval_row(r: &$row) -> Result<Approval> {
            Ok(Approval {
                update: parse("update id", r.get::<&str, _>("update_id"))?,
                group: parse("group id", r.get::<&str, _>("group_id"))?,
                decision: match r.get::<&str, _>("decision") {
                    "approve" => Decision::Approve,
                    "decline" => Decision::Decline,
                    other => return Err(corrupt("decision", other)),
                },
                deadline: opt_ts(r.get("deadline"))?,
                decided_at: parse("timestamp", r.get::<&str, _>("decided_at"))?,
                decided_by: r.get("decided_by"),
                reason: r.get("reason"),
                emergency: r.get::<i64, _>("emergency") != 0,
                remove: r.get::<i64, _>("remove") != 0,
            })
        }

        fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("{what}: {e}"))
        }

        fn parse<T: FromStr>(what: &str, s: &str) -> Result<T>
        where
            T::Err: std::fmt::Display,
        {
            s.parse().map_err(|e| corrupt(what, e))
        }

        fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
            serde_json::from_str(s).map_err(|e| corrupt(what, e))
        }

        fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
            serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encoding: {e}")))
        }

        fn opt_ts(s: Option<String>) -> Result<Option<Timestamp>> {
            s.map(|s| parse("timestamp", &s)).transpose()
        }

        fn tenant_from_row(r: &$row) -> Result<Tenant> {
            Ok(Tenant {
                id: parse("tenant id", r.get::<&str, _>("id"))?,
                name: r.get("name"),
                patch_day: json::<PatchDayConfig>("patch day", r.get::<&str, _>("patch_day"))?,
                max_hosts: r
                    .get::<Option<i64>, _>("max_hosts")
                    .map(|n| u32::try_from(n).map_err(|e| corrupt("max_hosts", e)))
                    .transpose()?,
            })
        }

        /// An outbox row (issue 11, point 5), from a query that selects its columns.
        fn outbox_row(r: &$row) -> Result<patchday_store::OutboxEvent> {
            Ok(patchday_store::OutboxEvent {
                key: r.get("event_key"),
                tenant: r
                    .get::<Option<&str>, _>("tenant_id")
                    .map(|t| parse("tenant id", t))
                    .transpose()?,
                event: parse("notification event", r.get::<&str, _>("event"))?,
                subject: r.get("subject"),
                body: json("notification body", r.get::<&str, _>("body"))?,
                at: parse("timestamp", r.get::<&str, _>("created_at"))?,
            })
        }

        fn eviction_row(r: &$row) -> Result<patchday_store::PayloadEviction> {
            Ok(patchday_store::PayloadEviction {
                sha256: r.get("sha256"),
                name: r.get("name"),
                length: u64::try_from(r.get::<i64, _>("length"))
                    .map_err(|_| StoreError::Corrupt("negative payload length".into()))?,
                evicted_at: parse("timestamp", r.get::<&str, _>("evicted_at"))?,
                reason: r.get("reason"),
            })
        }

        fn catalog_target_row(r: &$row) -> Result<CatalogTarget> {
            Ok(CatalogTarget {
                name: r.get("name"),
                length: u64::try_from(r.get::<i64, _>("length")).map_err(|e| corrupt("length", e))?,
                sha256: r.get("sha256"),
                release_counter: u64::try_from(r.get::<i64, _>("release_counter"))
                    .map_err(|e| corrupt("release_counter", e))?,
            })
        }

        fn u32_col(r: &$row, col: &str) -> Result<Option<u32>> {
            r.get::<Option<i64>, _>(col)
                .map(|n| u32::try_from(n).map_err(|e| corrupt(col, e)))
                .transpose()
        }

        fn token_info_row(r: &$row) -> Result<TokenInfo> {
            Ok(TokenInfo {
                id: r.get("id"),
                name: r.get("name"),
                prefix: r.get("prefix"),
                role: parse::<Role>("role", r.get::<&str, _>("role"))?,
                tenant: r
                    .get::<Option<String>, _>("tenant_id")
                    .map(|t| parse("tenant id", &t))
                    .transpose()?,
                created_at: parse("timestamp", r.get::<&str, _>("created_at"))?,
                expires_at: opt_ts(r.get("expires_at"))?,
                revoked_at: opt_ts(r.get("revoked_at"))?,
            })
        }

        fn enroll_info_row(r: &$row) -> Result<EnrollTokenInfo> {
            Ok(EnrollTokenInfo {
                id: r.get("id"),
                name: r.get("name"),
                prefix: r.get("prefix"),
                tenant: parse("tenant id", r.get::<&str, _>("tenant_id"))?,
                group: r
                    .get::<Option<String>, _>("group_id")
                    .map(|g| parse("group id", &g))
                    .transpose()?,
                created_at: parse("timestamp", r.get::<&str, _>("created_at"))?,
                expires_at: opt_ts(r.get("expires_at"))?,
                max_uses: u32_col(r, "max_uses")?,
                uses: u32_col(r, "uses")?.unwrap_or(0),
                revoked_at: opt_ts(r.get("revoked_at"))?,
            })
        }

        const TOKEN_COLUMNS: &str =
            "substr(hash, 1, 12) AS id, name, prefix, role, tenant_id, created_at, expires_at, revoked_at";

        const ENROLL_COLUMNS: &str = "substr(hash, 1, 12) AS id, name, prefix, tenant_id, group_id, \
             created_at, expires_at, max_uses, uses, revoked_at";
    };
}

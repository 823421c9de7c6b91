//! The SQLite store's read for the report: a site's clicks in a time range (`touches_at`).

use rusqlite::params;

use super::read::touch_row;
use super::{int, SqliteStore};
use crate::store::{StoreError, Touch};
use crate::traffic::Exclude;

/// A site's distinct clicks landed in `[from, to)`, by time (`touches_at` index).
pub(super) const CLICKS_SQL: &str =
    "SELECT param, network, value, click_at, min(path), 0, max(landing), min(traffic) FROM touches \
     WHERE site = ?1 AND click_at >= ?2 AND click_at < ?3 \
     GROUP BY param, network, value, click_at HAVING ((?5 >> min(min(traffic), 2)) & 1) = 0 \
     ORDER BY click_at, param, value LIMIT ?4";

impl SqliteStore {
    pub(super) fn clicks_between(
        &self,
        site: &str,
        from: u64,
        to: u64,
        limit: usize,
        exclude: Exclude,
    ) -> Result<Vec<Touch>, StoreError> {
        self.read_derived(|c| {
            let mut st = c.prepare_cached(CLICKS_SQL)?;
            let rows = st.query_map(
                params![site, int(from), int(to), limit as i64, exclude.mask()],
                touch_row,
            )?;
            rows.collect()
        })
    }
}

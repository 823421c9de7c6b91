//! The PostgreSQL store's read for the report: a site's clicks in a time range (`touches_at`),
//! the same rows as the SQLite store's (texts compared bytewise, as SQLite does).

use super::read::touch_row;
use super::write::int;
use super::{pg, Client};
use crate::store::{StoreError, Touch};
use crate::traffic::Exclude;

pub async fn clicks(
    c: &Client,
    site: &str,
    from: u64,
    to: u64,
    limit: usize,
    exclude: Exclude,
) -> Result<Vec<Touch>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT param, network, value, click_at, min(path COLLATE \"C\"), false, max(landing COLLATE \"C\"), min(traffic) \
             FROM touches WHERE site = $1 AND click_at >= $2 AND click_at < $3 \
             GROUP BY param, network, value, click_at \
             HAVING (($5::integer >> least(min(traffic), 2)) & 1) = 0 \
             ORDER BY click_at, param COLLATE \"C\", value COLLATE \"C\" LIMIT $4",
        )
        .await
        .map_err(pg)?;
    let rows = c
        .query(
            &st,
            &[&site, &int(from), &int(to), &(limit as i64), &(exclude.mask() as i32)],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(touch_row).collect())
}

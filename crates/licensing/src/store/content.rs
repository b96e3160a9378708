//! Licensed data and the record of each transfer (for its compensation).

use roster_platform::stored_text::StoredText;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Conn, parse};
use crate::domain::model::{ContentItem, ContentKind, Id};

const COLUMNS: &str = "id, account_id, owner_user_id, kind, title, uses_pmi, created_at_ms";

fn decode(row: &AnyRow) -> Result<ContentItem, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(ContentItem {
        id: Id::from_stored(row.try_get("id")?),
        account_id: Id::from_stored(row.try_get("account_id")?),
        owner_user_id: Id::from_stored(row.try_get("owner_user_id")?),
        kind: parse("content kind", &kind, ContentKind::from_str_opt)?,
        title: row.try_get("title")?,
        uses_pmi: row.try_get::<i64, _>("uses_pmi")? != 0,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

pub async fn insert(tx: &mut Conn, item: &ContentItem) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("INSERT INTO content_items ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
        .bind(item.id.as_str())
        .bind(item.account_id.as_str())
        .bind(item.owner_user_id.as_str())
        .bind(item.kind.as_str())
        .bind(&item.title)
        .bind(i64::from(item.uses_pmi))
        .bind(item.created_at_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Everything one user owns in the account, oldest first.
pub async fn of_owner(tx: &mut Conn, account: &Id, owner: &Id) -> Result<Vec<ContentItem>, sqlx::Error> {
    list(tx, account, owner, None, None, i64::MAX).await
}

/// One owner's items in id order after the page cursor, optionally of one kind.
pub async fn list(
    tx: &mut Conn,
    account: &Id,
    owner: &Id,
    kind: Option<ContentKind>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ContentItem>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM content_items WHERE account_id = $1 AND owner_user_id = $2 \
         AND ($3 = '' OR kind = $3) AND id > $4 ORDER BY id LIMIT $5"
    ))
    .bind(account.as_str())
    .bind(owner.as_str())
    .bind(kind.map_or("", ContentKind::as_str))
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(decode)
    .collect()
}

pub async fn set_owner(tx: &mut Conn, item: &Id, owner: &Id) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE content_items SET owner_user_id = $2 WHERE id = $1")
        .bind(item.as_str())
        .bind(owner.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Moves every item `owner` has in `from` to the account `to` (an unlinked user's own).
pub async fn rehome(tx: &mut Conn, from: &Id, owner: &Id, to: &Id) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE content_items SET account_id = $1 WHERE account_id = $2 AND owner_user_id = $3")
        .bind(to.as_str())
        .bind(from.as_str())
        .bind(owner.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn delete(tx: &mut Conn, item: &Id) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM content_items WHERE id = $1").bind(item.as_str()).execute(&mut *tx).await?;
    Ok(())
}

/// A recorded transfer: who gave, who received, and whether it was undone.
#[derive(Debug, Clone)]
pub struct TransferRecord {
    pub from_user_id: Id,
    pub to_user_id: Id,
    pub undone: bool,
}

pub async fn record_transfer(
    tx: &mut Conn,
    id: &Id,
    account: &Id,
    from: &Id,
    to: &Id,
    items: &[ContentItem],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO content_transfers (id, account_id, from_user_id, to_user_id, undone_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, NULL, $5)",
    )
    .bind(id.as_str())
    .bind(account.as_str())
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    for item in items {
        sqlx::query("INSERT INTO content_transfer_items (transfer_id, item_id) VALUES ($1, $2)")
            .bind(id.as_str())
            .bind(item.id.as_str())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

pub async fn transfer(tx: &mut Conn, account: &Id, id: &Id) -> Result<Option<TransferRecord>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT from_user_id, to_user_id, undone_at_ms FROM content_transfers WHERE account_id = $1 AND id = $2",
    )
    .bind(account.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|row| {
        Ok(TransferRecord {
            from_user_id: Id::from_stored(row.try_get("from_user_id")?),
            to_user_id: Id::from_stored(row.try_get("to_user_id")?),
            undone: row.try_get::<Option<i64>, _>("undone_at_ms")?.is_some(),
        })
    })
    .transpose()
}

/// The items a transfer moved that still exist.
pub async fn transferred_items(tx: &mut Conn, id: &Id) -> Result<Vec<ContentItem>, sqlx::Error> {
    let columns = COLUMNS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ");
    sqlx::query(&format!(
        "SELECT {columns} FROM content_items c JOIN content_transfer_items t ON t.item_id = c.id \
         WHERE t.transfer_id = $1 ORDER BY c.id"
    ))
    .bind(id.as_str())
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(decode)
    .collect()
}

pub async fn mark_undone(tx: &mut Conn, id: &Id, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE content_transfers SET undone_at_ms = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

//! Page sizes and opaque page tokens for list RPCs.
//!
//! A token is the sort key of the last item returned, wrapped so clients treat it as opaque.
//! Lists order by a unique, time-ordered id, so a page never repeats or skips an item that
//! existed when the first page was read.

use crate::status;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: u32,
    /// Sort key after which the page starts; `None` for the first page.
    pub after: Option<String>,
}

impl PageRequest {
    /// Validates `page_size` (0 means the default) and decodes `page_token`.
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, tonic::Status> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(status::invalid_argument("page_size", "must not be negative")),
            n if n as u32 > MAX_PAGE_SIZE => {
                return Err(status::invalid_argument("page_size", format!("must be at most {MAX_PAGE_SIZE}")));
            }
            n => n as u32,
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(
                decode(page_token)
                    .ok_or_else(|| status::invalid_argument("page_token", "is not a token this server issued"))?,
            )
        };
        Ok(Self { size, after })
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.size) + 1
    }

    /// Trims the extra row and returns the next token, if any.
    pub fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, String) {
        if rows.len() > self.size as usize {
            rows.truncate(self.size as usize);
            let token = rows.last().map(|last| encode(&key(last))).unwrap_or_default();
            (rows, token)
        } else {
            (rows, String::new())
        }
    }
}

const PREFIX: &str = "p1.";

fn encode(key: &str) -> String {
    format!("{PREFIX}{}", hex::encode(key.as_bytes()))
}

fn decode(token: &str) -> Option<String> {
    let digits = token.strip_prefix(PREFIX)?;
    if digits.is_empty() || digits.len() > 512 {
        return None;
    }
    String::from_utf8(hex::decode(digits).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_bounds() {
        assert_eq!(PageRequest::parse(0, "").expect("default").size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::parse(7, "").expect("seven").size, 7);
        assert!(PageRequest::parse(-1, "").is_err());
        assert!(PageRequest::parse(MAX_PAGE_SIZE as i32 + 1, "").is_err());
        assert!(PageRequest::parse(i32::MAX, "").is_err());
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let page = PageRequest::parse(2, "").expect("page");
        let (rows, token) = page.finish(vec!["a", "b", "c"], |s| s.to_string());
        assert_eq!(rows, vec!["a", "b"]);
        assert_eq!(PageRequest::parse(2, &token).expect("next").after.as_deref(), Some("b"));
        assert!(PageRequest::parse(2, "garbage").is_err());
        assert!(PageRequest::parse(2, "p1.zz").is_err());
        let (rows, token) = page.finish(vec!["a"], |s| s.to_string());
        assert_eq!((rows.len(), token.as_str()), (1, ""));
    }
}

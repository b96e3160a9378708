//! Bulk removal's input (SPEC R14, R25): the three actions, their CSV columns and sample file,
//! and the reading of a file (or a list) into rows. Every problem with a row stays with that
//! row (line, column, reason) so the others can go on; only a file whose header cannot be
//! understood, or that is too large, is refused as a whole.

use std::collections::HashMap;

use super::values::{Email, UserId};

/// The most data rows one bulk operation takes.
pub const MAX_ROWS: usize = 20_000;
/// The most bytes an uploaded file may have: 20,000 rows of long addresses fit well within it.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum BulkAction {
    Deactivate,
    Unlink,
    Delete,
}

pub const EMAIL: &str = "email";
pub const TRANSFER_TO: &str = "transfer_to";
/// The Yes/No columns of unlink and delete, with the content kind each moves (SPEC R23).
pub const TRANSFER_KINDS: [(&str, &str); 4] = [
    ("transfer_meetings", "meeting"),
    ("transfer_webinars", "webinar"),
    ("transfer_events", "event"),
    ("transfer_recordings", "recording"),
];

impl BulkAction {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The workflow kind of the parent operation.
    pub fn operation_kind(self) -> &'static str {
        match self {
            Self::Deactivate => "bulk.deactivate",
            Self::Unlink => "bulk.unlink",
            Self::Delete => "bulk.delete",
        }
    }

    /// The action a parent operation's kind names; `None` for every other kind.
    pub fn of_operation_kind(kind: &str) -> Option<Self> {
        <Self as strum::VariantArray>::VARIANTS.iter().copied().find(|action| action.operation_kind() == kind)
    }

    pub fn moves_content(self) -> bool {
        self != Self::Deactivate
    }

    /// The file's columns, in the template's order; every one must be in the header.
    pub fn columns(self) -> Vec<&'static str> {
        let mut columns = vec![EMAIL];
        if self.moves_content() {
            columns.push(TRANSFER_TO);
            columns.extend(TRANSFER_KINDS.iter().map(|(column, _)| *column));
        }
        columns
    }

    /// The sample file: the header and one example row (SPEC R25).
    pub fn template(self) -> String {
        let example = if self.moves_content() {
            "leaving.user@example.com,colleague@example.com,Yes,No,No,Yes"
        } else {
            "leaving.user@example.com"
        };
        format!("{}\r\n{example}\r\n", self.columns().join(","))
    }

    pub fn template_filename(self) -> String {
        format!("roster-bulk-{}.csv", self.as_str())
    }
}

/// A user as a row names them: by e-mail (files), or by id or e-mail (lists).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserRef {
    Id(UserId),
    Email(Email),
}

impl UserRef {
    /// An id, or an e-mail address when the text has an @.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.contains('@') {
            Email::parse(raw).map(Self::Email).map_err(|why| format!("e-mail {why}"))
        } else if raw.is_empty() {
            Err("is required".to_owned())
        } else {
            UserId::parse(raw).map(Self::Id).map_err(|_| "is neither a user id nor an e-mail address".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Id(id) => id.as_str(),
            Self::Email(email) => email.as_str(),
        }
    }
}

/// What a row asks to move to whom (SPEC R23); `kinds` is never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowTransfer {
    pub to: UserRef,
    pub kinds: Vec<&'static str>,
}

/// A row that could be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowEntry {
    pub user: UserRef,
    pub transfer: Option<RowTransfer>,
}

/// Why one row cannot be acted on; it is reported with the row's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// The column at fault; empty when the row as a whole is (a stray field, bad bytes).
    pub column: String,
    pub reason: String,
}

impl RowProblem {
    fn new(column: &str, reason: impl Into<String>) -> Self {
        Self { column: column.to_owned(), reason: reason.into() }
    }
}

/// One row: its line in the file (1 is the header) or its position in a list (from 1), its
/// fields as given (for the results file), and what it asks or why it cannot be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRow {
    pub line: u64,
    pub fields: Vec<String>,
    pub entry: Result<RowEntry, RowProblem>,
}

/// Rows ready to be stored, with the header the results file repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkInput {
    pub header: Vec<String>,
    pub rows: Vec<BulkRow>,
}

/// Why a whole file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    #[error("the file is empty; the first line must be the header: {expected}")]
    Empty { expected: String },
    #[error("the file has a header but no rows")]
    NoRows,
    #[error("line 1, column {column:?}: unknown column; the header must be: {expected}")]
    UnknownColumn { column: String, expected: String },
    #[error("line 1: column {column:?} is missing; the header must be: {expected}")]
    MissingColumn { column: &'static str, expected: String },
    #[error("line 1, column {column:?}: appears twice in the header")]
    RepeatedColumn { column: String },
    #[error("line 1: the header is not UTF-8 text")]
    HeaderNotText,
    #[error("has more than {MAX_ROWS} rows; split it into files of at most {MAX_ROWS}")]
    TooManyRows,
    #[error("is larger than {} MiB; split it into smaller files", MAX_FILE_BYTES / (1024 * 1024))]
    TooLarge,
    #[error("line {line}: {reason}")]
    Unreadable { line: u64, reason: String },
}

/// Reads an uploaded CSV file (SPEC R25). A UTF-8 byte order mark, CRLF line ends, quoted
/// fields (with commas, quotes and line breaks inside) and blank lines anywhere are accepted;
/// header names and Yes/No are case-insensitive.
pub fn read_csv(action: BulkAction, bytes: &[u8]) -> Result<BulkInput, FileProblem> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(FileProblem::TooLarge);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let expected = action.columns().join(",");
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut records = reader.byte_records();
    let mut lines = LineCounter::new(bytes);
    let header = loop {
        match records.next() {
            None => return Err(FileProblem::Empty { expected }),
            Some(Ok(record)) if is_blank(&record) => {}
            Some(Ok(record)) => break record,
            Some(Err(error)) => return Err(unreadable(&error, &mut lines)),
        }
    };
    let header: Vec<String> = header
        .iter()
        .map(|name| std::str::from_utf8(name).map(|n| n.trim().to_owned()))
        .collect::<Result<_, _>>()
        .map_err(|_| FileProblem::HeaderNotText)?;
    let positions = column_positions(action, &header, &expected)?;
    let mut rows = Vec::new();
    let mut repeats = Repeats::default();
    for record in records {
        let record = record.map_err(|error| unreadable(&error, &mut lines))?;
        if is_blank(&record) {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(FileProblem::TooManyRows);
        }
        let line = lines.line_at(record.position().map_or(0, csv::Position::byte));
        let fields: Vec<String> = record.iter().map(|field| String::from_utf8_lossy(field).into_owned()).collect();
        let entry = row_entry(action, &header, &positions, &record, |user| repeats.check(user, line, "line"));
        rows.push(BulkRow { line, fields, entry });
    }
    if rows.is_empty() {
        return Err(FileProblem::NoRows);
    }
    Ok(BulkInput { header, rows })
}

fn unreadable(error: &csv::Error, lines: &mut LineCounter<'_>) -> FileProblem {
    let line = lines.line_at(error.position().map_or(0, csv::Position::byte));
    FileProblem::Unreadable { line, reason: error.to_string() }
}

/// Line numbers as an editor shows them. The `csv` crate counts only `\n`, and counts the one
/// of a CRLF after the record it ends, so files saved on Windows (CRLF, or old Mac CR) would get
/// wrong numbers; here CRLF, LF and a lone CR each end one line.
struct LineCounter<'a> {
    bytes: &'a [u8],
    counted_to: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, counted_to: 0, line: 1 }
    }

    /// The line of the record the `csv` crate says starts at `offset`; offsets must not go
    /// backwards. Its offset can be that of blank lines it skipped before the record, and no
    /// record starts with a line break, so those are stepped over.
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut offset = usize::try_from(offset).unwrap_or(usize::MAX).min(self.bytes.len());
        while self.bytes.get(offset).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
            offset += 1;
        }
        for index in self.counted_to..offset {
            let ends_line = match self.bytes[index] {
                b'\r' => true,
                b'\n' => index == 0 || self.bytes[index - 1] != b'\r',
                _ => false,
            };
            self.line += u64::from(ends_line);
        }
        self.counted_to = self.counted_to.max(offset);
        self.line
    }
}

/// The first row that named each user, so a second names the first (SPEC R25: a user listed
/// twice is that row's problem).
#[derive(Default)]
struct Repeats(HashMap<UserRef, u64>);

impl Repeats {
    fn check(&mut self, user: &UserRef, line: u64, unit: &str) -> Result<(), String> {
        match self.0.get(user) {
            Some(first) => Err(format!("lists the same user as {unit} {first}")),
            None => {
                self.0.insert(user.clone(), line);
                Ok(())
            }
        }
    }
}

fn is_blank(record: &csv::ByteRecord) -> bool {
    record.iter().all(|field| field.iter().all(u8::is_ascii_whitespace))
}

/// Where each of the action's columns is in the header.
fn column_positions(
    action: BulkAction,
    header: &[String],
    expected: &str,
) -> Result<HashMap<&'static str, usize>, FileProblem> {
    let columns = action.columns();
    let mut positions = HashMap::new();
    for (index, name) in header.iter().enumerate() {
        let known = columns.iter().find(|column| column.eq_ignore_ascii_case(name));
        let Some(column) = known else {
            return Err(FileProblem::UnknownColumn { column: name.clone(), expected: expected.to_owned() });
        };
        if positions.insert(*column, index).is_some() {
            return Err(FileProblem::RepeatedColumn { column: name.clone() });
        }
    }
    if let Some(missing) = columns.iter().find(|column| !positions.contains_key(*column)) {
        return Err(FileProblem::MissingColumn { column: missing, expected: expected.to_owned() });
    }
    Ok(positions)
}

fn row_entry(
    action: BulkAction,
    header: &[String],
    positions: &HashMap<&'static str, usize>,
    record: &csv::ByteRecord,
    mut repeated: impl FnMut(&UserRef) -> Result<(), String>,
) -> Result<RowEntry, RowProblem> {
    if record.len() != header.len() {
        return Err(RowProblem::new(
            "",
            format!("has {} fields where the header has {} columns", record.len(), header.len()),
        ));
    }
    let field = |column: &'static str| -> Result<&str, RowProblem> {
        let bytes = record.get(positions[column]).unwrap_or_default();
        std::str::from_utf8(bytes).map(str::trim).map_err(|_| RowProblem::new(column, "is not UTF-8 text"))
    };
    let email = field(EMAIL)?;
    if email.is_empty() {
        return Err(RowProblem::new(EMAIL, "is required"));
    }
    let user = Email::parse(email).map(UserRef::Email).map_err(|why| RowProblem::new(EMAIL, why.to_string()))?;
    repeated(&user).map_err(|why| RowProblem::new(EMAIL, why))?;
    if !action.moves_content() {
        return Ok(RowEntry { user, transfer: None });
    }
    let mut kinds = Vec::new();
    for (column, kind) in TRANSFER_KINDS {
        if yes_no(field(column)?).ok_or_else(|| RowProblem::new(column, "must be Yes or No"))? {
            kinds.push(kind);
        }
    }
    let to = field(TRANSFER_TO)?;
    let transfer = match (to.is_empty(), kinds.is_empty()) {
        (true, true) => None,
        (true, false) => return Err(RowProblem::new(TRANSFER_TO, "is required when something is to be transferred")),
        (false, true) => {
            return Err(RowProblem::new(TRANSFER_TO, "is given but every transfer column is No; set one to Yes"));
        }
        (false, false) => {
            let to = Email::parse(to).map_err(|why| RowProblem::new(TRANSFER_TO, why.to_string()))?;
            Some(RowTransfer { to: UserRef::Email(to), kinds })
        }
    };
    Ok(RowEntry { user, transfer })
}

/// Yes or No in any case; an empty cell is No.
fn yes_no(cell: &str) -> Option<bool> {
    if cell.is_empty() || cell.eq_ignore_ascii_case("no") {
        Some(false)
    } else if cell.eq_ignore_ascii_case("yes") {
        Some(true)
    } else {
        None
    }
}

/// A user named in a list rather than a file, with what to move for unlink and delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedUser {
    pub user: String,
    pub transfer_to: String,
    pub kinds: Vec<&'static str>,
}

/// The list form of [`read_csv`]: each entry becomes a row numbered from 1, with the same
/// per-row checks; its fields are the CSV columns, so the results file looks the same.
pub fn read_list(action: BulkAction, users: &[ListedUser]) -> Result<BulkInput, FileProblem> {
    if users.is_empty() {
        return Err(FileProblem::NoRows);
    }
    if users.len() > MAX_ROWS {
        return Err(FileProblem::TooManyRows);
    }
    let header: Vec<String> = action.columns().iter().map(|c| (*c).to_owned()).collect();
    let mut repeats = Repeats::default();
    let rows = users
        .iter()
        .zip(1..)
        .map(|(listed, line)| {
            let mut fields = vec![listed.user.clone()];
            if action.moves_content() {
                fields.push(listed.transfer_to.clone());
                let yes = |kind: &str| if listed.kinds.contains(&kind) { "Yes" } else { "No" }.to_owned();
                fields.extend(TRANSFER_KINDS.iter().map(|(_, kind)| yes(kind)));
            }
            let entry = listed_entry(action, listed, |user| repeats.check(user, line, "entry"));
            BulkRow { line, fields, entry }
        })
        .collect();
    Ok(BulkInput { header, rows })
}

fn listed_entry(
    action: BulkAction,
    listed: &ListedUser,
    mut repeated: impl FnMut(&UserRef) -> Result<(), String>,
) -> Result<RowEntry, RowProblem> {
    let user = UserRef::parse(&listed.user).map_err(|why| RowProblem::new("user", why))?;
    repeated(&user).map_err(|why| RowProblem::new("user", why))?;
    let to = listed.transfer_to.trim();
    if !action.moves_content() && (!to.is_empty() || !listed.kinds.is_empty()) {
        return Err(RowProblem::new(TRANSFER_TO, "deactivation moves nothing; leave the transfer out"));
    }
    let transfer = match (to.is_empty(), listed.kinds.is_empty()) {
        (true, true) => None,
        (true, false) => return Err(RowProblem::new(TRANSFER_TO, "is required when something is to be transferred")),
        (false, true) => return Err(RowProblem::new(TRANSFER_TO, "is given but nothing is to be transferred")),
        (false, false) => Some(RowTransfer {
            to: UserRef::parse(to).map_err(|why| RowProblem::new(TRANSFER_TO, why))?,
            kinds: listed.kinds.clone(),
        }),
    };
    Ok(RowEntry { user, transfer })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rows(action: BulkAction, text: &str) -> Vec<(u64, Result<RowEntry, RowProblem>)> {
        read_csv(action, text.as_bytes()).expect("readable").rows.into_iter().map(|r| (r.line, r.entry)).collect()
    }

    fn email(text: &str) -> UserRef {
        UserRef::Email(Email::parse(text).expect("valid"))
    }

    #[test]
    fn r25_the_template_reads_back_as_its_example_row() {
        for action in [BulkAction::Deactivate, BulkAction::Unlink, BulkAction::Delete] {
            let read = read_csv(action, action.template().as_bytes()).expect("the template is a valid file");
            assert_eq!(read.rows.len(), 1);
            let entry = read.rows[0].entry.clone().expect("the example row is valid");
            assert_eq!(entry.user, email("leaving.user@example.com"));
            assert_eq!(entry.transfer.is_some(), action.moves_content(), "{action:?}");
        }
        assert_eq!(
            BulkAction::Unlink.template().lines().next(),
            Some("email,transfer_to,transfer_meetings,transfer_webinars,transfer_events,transfer_recordings")
        );
    }

    #[test]
    fn r25_bom_crlf_quotes_case_and_blank_lines_are_tolerated() {
        let text = "\u{feff}EMAIL,Transfer_To,TRANSFER_MEETINGS,transfer_webinars,transfer_events,transfer_recordings\r\n\
                    \"a@x.example\",\"b@x.example\",yes,NO,\"No\",YES\r\n\r\n\
                    c@x.example,,,,,\r\n\r\n\r\n";
        let read = rows(BulkAction::Delete, text);
        assert_eq!(read.len(), 2);
        assert_eq!(
            read[0],
            (
                2,
                Ok(RowEntry {
                    user: email("a@x.example"),
                    transfer: Some(RowTransfer { to: email("b@x.example"), kinds: vec!["meeting", "recording"] }),
                })
            )
        );
        assert_eq!(read[1], (4, Ok(RowEntry { user: email("c@x.example"), transfer: None })));
    }

    #[test]
    fn r25_a_quoted_field_with_commas_and_a_line_break_is_one_field_and_lines_still_count() {
        let text = "email\n\"odd,\nname@x.example\"\nok@x.example\n";
        let read = rows(BulkAction::Deactivate, text);
        assert_eq!(read[0].0, 2);
        assert_eq!(read[0].1.as_ref().expect_err("not an address").column, EMAIL);
        assert_eq!(read[1], (4, Ok(RowEntry { user: email("ok@x.example"), transfer: None })), "line 4, not 3");
    }

    #[test]
    fn r25_each_row_problem_names_its_line_and_column_and_the_others_go_on() {
        let text = "email,transfer_to,transfer_meetings,transfer_webinars,transfer_events,transfer_recordings\n\
                    not-an-address,,,,,\n\
                    a@x.example,b@x.example,maybe,No,No,No\n\
                    c@x.example,,Yes,No,No,No\n\
                    d@x.example,e@x.example,No,No,No,No\n\
                    f@x.example,,,,,,extra\n\
                    g@x.example\n\
                    A@X.example,,,,,\n\
                    h@x.example,,,,,\n";
        let problems: Vec<(u64, String)> = rows(BulkAction::Unlink, text)
            .into_iter()
            .map(|(line, entry)| (line, entry.err().map(|p| p.column).unwrap_or_else(|| "ok".into())))
            .collect();
        assert_eq!(
            problems,
            [
                (2, EMAIL.to_owned()),
                (3, "transfer_meetings".to_owned()),
                (4, TRANSFER_TO.to_owned()),
                (5, TRANSFER_TO.to_owned()),
                (6, String::new()),
                (7, String::new()),
                (8, EMAIL.to_owned()),
                (9, "ok".to_owned()),
            ]
        );
        let read = rows(BulkAction::Unlink, text);
        assert_eq!(read[4].1.clone().expect_err("a short row").reason, "has 7 fields where the header has 6 columns");
        assert_eq!(read[5].1.clone().expect_err("a short row").reason, "has 1 fields where the header has 6 columns");
        assert_eq!(read[6].1.clone().expect_err("a repeat").reason, "lists the same user as line 3");
    }

    #[test]
    fn r25_a_header_that_cannot_be_understood_refuses_the_file() {
        let refused = |action, text: &str| read_csv(action, text.as_bytes()).expect_err("refused");
        assert!(matches!(refused(BulkAction::Deactivate, ""), FileProblem::Empty { .. }));
        assert!(matches!(refused(BulkAction::Deactivate, "\n\n"), FileProblem::Empty { .. }));
        assert_eq!(refused(BulkAction::Deactivate, "email\r\n"), FileProblem::NoRows);
        assert!(matches!(
            refused(BulkAction::Deactivate, "a@x.example\nb@x.example\n"),
            FileProblem::UnknownColumn { column, .. } if column == "a@x.example"
        ));
        assert!(matches!(
            refused(BulkAction::Deactivate, "email,colour\na@x.example,red\n"),
            FileProblem::UnknownColumn { column, .. } if column == "colour"
        ));
        assert!(matches!(
            refused(BulkAction::Unlink, "email,transfer_to\na@x.example,\n"),
            FileProblem::MissingColumn { column: "transfer_meetings", .. }
        ));
        assert!(matches!(refused(BulkAction::Deactivate, "email,Email\n"), FileProblem::RepeatedColumn { .. }));
        assert_eq!(
            refused(BulkAction::Deactivate, "\u{0}\u{1}\u{ff}\n"),
            FileProblem::UnknownColumn { column: "\u{0}\u{1}\u{ff}".into(), expected: "email".into() }
        );
        assert_eq!(
            refused(BulkAction::Deactivate, &String::from_utf8_lossy(b"\xff\xfe\n")),
            FileProblem::UnknownColumn { column: "\u{fffd}\u{fffd}".into(), expected: "email".into() }
        );
        assert_eq!(read_csv(BulkAction::Deactivate, b"\xff\xfe,\x00\n"), Err(FileProblem::HeaderNotText));
    }

    #[test]
    fn r25_a_row_that_is_not_utf8_is_reported_on_its_line() {
        let read = read_csv(BulkAction::Deactivate, b"email\nok@x.example\n\xff\xfe@x.example\n").expect("readable");
        assert_eq!(read.rows[1].line, 3);
        assert_eq!(read.rows[1].entry, Err(RowProblem::new(EMAIL, "is not UTF-8 text")));
        assert!(read.rows[0].entry.is_ok());
    }

    #[test]
    fn r25_at_most_max_rows_are_taken() {
        let mut text = String::from("email\n");
        for n in 0..MAX_ROWS {
            text.push_str(&format!("user{n}@x.example\n"));
        }
        assert_eq!(read_csv(BulkAction::Deactivate, text.as_bytes()).expect("the limit itself").rows.len(), MAX_ROWS);
        text.push_str("one.more@x.example\n");
        assert_eq!(read_csv(BulkAction::Deactivate, text.as_bytes()), Err(FileProblem::TooManyRows));
        assert_eq!(read_csv(BulkAction::Deactivate, &vec![b'a'; MAX_FILE_BYTES + 1]), Err(FileProblem::TooLarge));
    }

    #[test]
    fn r14_a_list_names_users_by_id_or_email_with_the_same_row_checks() {
        let id = UserId::generate();
        let listed = [
            ListedUser { user: id.to_string(), ..Default::default() },
            ListedUser { user: "A@x.example".into(), transfer_to: "b@x.example".into(), kinds: vec!["recording"] },
            ListedUser { user: "a@x.example".into(), ..Default::default() },
            ListedUser { user: "nobody".into(), ..Default::default() },
            ListedUser { user: "c@x.example".into(), kinds: vec!["meeting"], ..Default::default() },
        ];
        let read = read_list(BulkAction::Delete, &listed).expect("a list");
        assert_eq!(read.rows[0].entry, Ok(RowEntry { user: UserRef::Id(id), transfer: None }));
        assert_eq!(read.rows[1].fields, ["A@x.example", "b@x.example", "No", "No", "No", "Yes"]);
        assert!(read.rows[1].entry.is_ok());
        assert_eq!(read.rows[2].entry.clone().expect_err("a repeat").reason, "lists the same user as entry 2");
        assert_eq!(read.rows[2].entry.clone().expect_err("a repeat").column, "user");
        assert_eq!(read.rows[3].entry.clone().expect_err("bad").column, "user");
        assert_eq!(read.rows[4].entry.clone().expect_err("no target").column, TRANSFER_TO);
        let deactivate = [ListedUser { user: "a@x.example".into(), kinds: vec!["meeting"], ..Default::default() }];
        assert!(read_list(BulkAction::Deactivate, &deactivate).expect("a list").rows[0].entry.is_err());
        assert_eq!(read_list(BulkAction::Deactivate, &[]), Err(FileProblem::NoRows));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever arrives, reading never panics, every row has a line past the header, and
        /// every refusal of the whole file that is about a place says which line.
        #[test]
        fn r25_any_bytes_read_without_panic_and_every_row_has_a_line(
            bytes in proptest::collection::vec(
                prop_oneof![
                    Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b'@'), Just(b'.'),
                    Just(0xffu8), any::<u8>(), b'a'..=b'z'
                ],
                0..400,
            ),
            prefix in prop_oneof![Just(""), Just("email\n"), Just("email,transfer_to,transfer_meetings,transfer_webinars,transfer_events,transfer_recordings\n")],
            action in prop_oneof![Just(BulkAction::Deactivate), Just(BulkAction::Unlink)],
        ) {
            let mut input = prefix.as_bytes().to_vec();
            input.extend(bytes);
            match read_csv(action, &input) {
                Ok(read) => {
                    let mut last = 1;
                    for row in &read.rows {
                        prop_assert!(row.line > last, "line {} after {}", row.line, last);
                        last = row.line;
                        if let Err(problem) = &row.entry {
                            prop_assert!(!problem.reason.is_empty());
                        }
                    }
                }
                Err(FileProblem::Unreadable { line, .. }) => prop_assert!(line >= 1),
                Err(_) => {}
            }
        }
    }
}

//! A tiny builder for dynamic SQL with `$N` placeholders, valid on SQLite and PostgreSQL.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

/// A bound value.
#[derive(Debug, Clone)]
pub enum Arg {
    /// Text.
    Text(String),
    /// Nullable text.
    OptText(Option<String>),
    /// Integer.
    Int(i64),
}

/// SQL text plus its arguments in placeholder order.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Sql { text: text.to_string(), args: Vec::new() }
    }
    /// Append raw SQL.
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }
    /// Append a placeholder bound to `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }
    /// Build the sqlx query.
    pub fn query(&self) -> Query<'_, Any, AnyArguments> {
        bind_all(sqlx::query(sqlx::AssertSqlSafe(self.text.clone())), &self.args)
    }
}

/// Bind `args` to `q` in order.
pub(crate) fn bind_all<'q>(mut q: Query<'q, Any, AnyArguments>, args: &'q [Arg]) -> Query<'q, Any, AnyArguments> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::OptText(s) => q.bind(s.as_deref()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

//! A rule compiled to one set-based query over the projections: the
//! contact's profile row `p`, and for each leaf that reads history (events,
//! stage changes, answers, memberships) one aggregate per contact, LEFT
//! JOINed, so the plan is a handful of hash joins whatever the shape of
//! the boolean tree. Every leaf compiles to a boolean that is never NULL,
//! so `not` means what it says.
//!
//! The same compilation serves builds and previews (all contacts), and
//! explanations and estimates (a few contacts: [`Scope::Contacts`] narrows
//! every aggregate to them).

use chrono::{DateTime, Utc};
use sqlx::Arguments as _;
use sqlx::postgres::PgArguments;
use uuid::Uuid;

use crate::domain::rule::*;

mod attribute;
mod lead_score;

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
enum Param {
    Uuid(Uuid),
    Uuids(Vec<Uuid>),
    Text(String),
    Texts(Vec<String>),
    Smallint(i16),
    Smallints(Vec<i16>),
    Int(i32),
    Float(f64),
    Time(DateTime<Utc>),
}

/// Where a node stands in the tree: joined by AND up to the root (its
/// verdict decides the rule alone when false), or under any_of or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Conjunct,
    Nested,
}

/// Which contacts the query considers.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    Contacts(Vec<Uuid>),
}

/// One leaf's pieces of the select list: whether it holds, and what was
/// found (text, NULL when nothing was).
#[derive(Debug)]
pub struct LeafSql {
    pub matched: String,
    pub observed: String,
    /// `matched` is never NULL (an EXISTS): left bare, so that PostgreSQL
    /// can plan it as a semi- or anti-join.
    pub never_null: bool,
}

/// A compiled rule: `FROM {from} WHERE {predicate}` selects the contacts.
#[derive(Debug)]
pub struct Compiled {
    /// The profiles and the leaves' joins.
    pub from: String,
    /// Whether the rule holds for the row.
    pub predicate: String,
    /// The leaves, depth first.
    pub leaves: Vec<LeafSql>,
    /// For rules with lead scores: when decay alone next changes a
    /// contact's verdict (NULL for never), per row.
    pub crossing: Option<String>,
    params: Vec<Param>,
}

impl Compiled {
    /// The parameters in order, for `sqlx::query_with`.
    pub fn arguments(&self) -> Result<PgArguments, sqlx::error::BoxDynError> {
        self.arguments_with(&[])
    }

    /// The parameters, then `extra` uuids numbered after them (see
    /// [`Compiled::next_param`]).
    pub fn arguments_with(&self, extra: &[Uuid]) -> Result<PgArguments, sqlx::error::BoxDynError> {
        let mut args = PgArguments::default();
        for param in &self.params {
            match param {
                Param::Uuid(v) => args.add(*v)?,
                Param::Uuids(v) => args.add(v.clone())?,
                Param::Text(v) => args.add(v.clone())?,
                Param::Texts(v) => args.add(v.clone())?,
                Param::Smallint(v) => args.add(*v)?,
                Param::Smallints(v) => args.add(v.clone())?,
                Param::Int(v) => args.add(*v)?,
                Param::Float(v) => args.add(*v)?,
                Param::Time(v) => args.add(*v)?,
            }
        }
        for id in extra {
            args.add(*id)?;
        }
        Ok(args)
    }

    /// The number of the first parameter a caller may add after the rule's.
    pub fn next_param(&self) -> usize {
        self.params.len() + 1
    }

    /// `SELECT p.contact_id ... WHERE` the rule holds.
    pub fn members(&self) -> String {
        format!(
            "SELECT p.contact_id FROM {} WHERE {}",
            self.from, self.predicate
        )
    }
}

/// Compiles `rule` for `tenant`, with relative times resolved at `now`.
pub fn compile(rule: &Rule, tenant: Uuid, now: DateTime<Utc>, scope: &Scope) -> Compiled {
    let mut compiler = Compiler {
        now,
        params: vec![Param::Uuid(tenant)],
        joins: String::new(),
        leaves: Vec::new(),
        aliases: 0,
        crossings: Vec::new(),
        scope: None,
    };
    if let Scope::Contacts(ids) = scope {
        compiler.scope = Some(compiler.param(Param::Uuids(ids.clone())));
    }
    let predicate = compiler.node(rule, Position::Conjunct);
    let mut from = "segmentation.profiles p".to_owned();
    from.push_str(&compiler.joins);
    let mut predicate = format!("p.tenant_id = $1 AND {predicate}");
    if let Some(ids) = &compiler.scope {
        predicate.push_str(&format!(" AND p.contact_id = ANY({ids})"));
    }
    let crossing = (!compiler.crossings.is_empty())
        .then(|| format!("least({})", compiler.crossings.join(", ")));
    Compiled {
        from,
        predicate,
        leaves: compiler.leaves,
        crossing,
        params: compiler.params,
    }
}

struct Compiler {
    now: DateTime<Utc>,
    params: Vec<Param>,
    joins: String,
    leaves: Vec<LeafSql>,
    /// Joins made so far (each gets an alias of its own).
    aliases: usize,
    /// When each lead score next decays past a bound.
    crossings: Vec<String>,
    /// The placeholder of the contact ids the query is narrowed to.
    scope: Option<String>,
}

impl Compiler {
    /// Binds `param`, returning its placeholder with its SQL type.
    fn param(&mut self, param: Param) -> String {
        let cast = match &param {
            Param::Uuid(_) => "uuid",
            Param::Uuids(_) => "uuid[]",
            Param::Text(_) => "text",
            Param::Texts(_) => "text[]",
            Param::Smallint(_) => "int2",
            Param::Smallints(_) => "int2[]",
            Param::Int(_) => "int4",
            Param::Float(_) => "float8",
            Param::Time(_) => "timestamptz",
        };
        self.params.push(param);
        format!("${}::{cast}", self.params.len())
    }

    fn node(&mut self, rule: &Rule, position: Position) -> String {
        match rule {
            Rule::AllOf(children) => self.combine(children, " AND ", "true", position),
            Rule::AnyOf(children) => self.combine(children, " OR ", "false", Position::Nested),
            Rule::Not(child) => format!("NOT {}", self.node(child, Position::Nested)),
            Rule::Leaf(leaf) => {
                let sql = self.leaf(leaf, position);
                let predicate = if sql.never_null {
                    sql.matched.clone()
                } else {
                    format!("coalesce({}, false)", sql.matched)
                };
                self.leaves.push(sql);
                predicate
            }
        }
    }

    fn combine(
        &mut self,
        children: &[Rule],
        with: &str,
        empty: &str,
        position: Position,
    ) -> String {
        if children.is_empty() {
            return empty.to_owned();
        }
        let parts: Vec<String> = children
            .iter()
            .map(|child| self.node(child, position))
            .collect();
        format!("({})", parts.join(with))
    }

    fn leaf(&mut self, leaf: &Leaf, position: Position) -> LeafSql {
        match leaf {
            Leaf::Attribute(test) => LeafSql {
                matched: self.attribute("p.attributes", test),
                observed: format!("(p.attributes #> {})::text", self.path(&test.path)),
                never_null: false,
            },
            Leaf::EmailDomain(domains) => self.text_set("p.email_domain", domains),
            Leaf::Locale(locales) => self.text_set("lower(p.locale)", locales),
            Leaf::TimeZone(zones) => self.text_set("lower(p.time_zone)", zones),
            Leaf::Created(window) => LeafSql {
                matched: self.within("p.create_time", *window),
                observed: "p.create_time::text".to_owned(),
                never_null: false,
            },
            Leaf::Tags { matching, tags } => {
                let tags = self.param(Param::Texts(tags.clone()));
                let matched = match matching {
                    TagMatch::Any => format!("p.tags && {tags}"),
                    TagMatch::All => format!("p.tags @> {tags}"),
                    TagMatch::None => format!("NOT (p.tags && {tags})"),
                };
                LeafSql {
                    matched,
                    observed: "array_to_string(p.tags, ', ')".to_owned(),
                    never_null: false,
                }
            }
            Leaf::Stage(stages) => LeafSql {
                matched: format!(
                    "p.stage = ANY({})",
                    self.param(Param::Smallints(stages.clone()))
                ),
                observed: "p.stage::text".to_owned(),
                never_null: false,
            },
            Leaf::Consent { channel, state } => {
                let channel = self.param(Param::Smallint(*channel));
                let state = self.param(Param::Smallint(*state));
                // A channel never answered is UNKNOWN (1).
                let current = format!("coalesce(p.consents[{channel}], 1)");
                LeafSql {
                    matched: format!("{current} = {state}"),
                    observed: format!("{current}::text"),
                    never_null: false,
                }
            }
            Leaf::StageEntered { stage, within_days } => {
                let stage = self.param(Param::Smallint(*stage));
                let window = self.within("change_time", Window::Within(*within_days));
                let alias = self.join(
                    "max(change_time)",
                    "segmentation.stage_changes",
                    &format!("stage = {stage} AND {window}"),
                );
                LeafSql {
                    matched: format!("{alias}.v IS NOT NULL"),
                    observed: format!("{alias}.v::text"),
                    never_null: false,
                }
            }
            Leaf::Event(test) => self.event(test, position),
            Leaf::LeadScore(test) => self.lead_score(test),
            Leaf::NpsCategory(categories) => {
                let categories = self.param(Param::Smallints(categories.clone()));
                let alias = self.next_alias();
                let scope = self.scope_filter();
                self.joins.push_str(&format!(
                    " LEFT JOIN (SELECT DISTINCT ON (contact_id) contact_id, score AS v \
                     FROM segmentation.answers WHERE tenant_id = $1 AND kind = 1{scope} \
                     ORDER BY contact_id, answer_time DESC, response_id DESC, question_id COLLATE \"C\" DESC) {alias} \
                     ON {alias}.contact_id = p.contact_id"
                ));
                LeafSql {
                    matched: format!(
                        "(CASE WHEN {alias}.v >= 9 THEN 3 WHEN {alias}.v >= 7 THEN 2 \
                         WHEN {alias}.v >= 0 THEN 1 END)::int2 = ANY({categories})"
                    ),
                    observed: format!("{alias}.v::text"),
                    never_null: false,
                }
            }
            Leaf::Score(test) => {
                let kind = self.param(Param::Smallint(test.kind));
                let min = self.param(Param::Int(test.min));
                let max = self.param(Param::Int(test.max));
                let window = self.within("answer_time", test.window);
                let alias = self.join(
                    "count(*)",
                    "segmentation.answers",
                    &format!("kind = {kind} AND score BETWEEN {min} AND {max} AND {window}"),
                );
                LeafSql {
                    matched: format!("{alias}.v IS NOT NULL"),
                    observed: format!("coalesce({alias}.v, 0)::text"),
                    never_null: false,
                }
            }
            Leaf::Segment(segment) => {
                let segment = self.param(Param::Uuid(*segment));
                let alias = self.next_alias();
                let scope = self.scope_filter();
                self.joins.push_str(&format!(
                    " LEFT JOIN (SELECT contact_id, true AS v FROM segmentation.memberships \
                     WHERE tenant_id = $1 AND segment_id = {segment}{scope}) {alias} \
                     ON {alias}.contact_id = p.contact_id"
                ));
                LeafSql {
                    matched: format!("{alias}.v IS NOT NULL"),
                    observed: format!("({alias}.v IS NOT NULL)::text"),
                    never_null: false,
                }
            }
        }
    }

    /// The events `test` looks at: its type, window, channel, properties.
    fn event_filter(&mut self, test: &EventTest) -> String {
        let event_type = self.param(Param::Text(test.event_type.clone()));
        let mut filter = format!("type = {event_type} AND {}", {
            self.within("occur_time", test.window)
        });
        if let Some(channel) = test.channel {
            let channel = self.param(Param::Smallint(channel));
            filter.push_str(&format!(" AND channel = {channel}"));
        }
        for property in &test.properties {
            let matched = self.attribute("properties", property);
            filter.push_str(&format!(" AND coalesce({matched}, false)"));
        }
        filter
    }

    fn event(&mut self, test: &EventTest, position: Position) -> LeafSql {
        let mut filter = self.event_filter(test);
        if let Some(exists) = test.existence() {
            // "Did it happen at all": a semi-join (anti-join for "never")
            // instead of counting every contact's events. Where it decides
            // the whole rule (a conjunct of the root), the uncorrelated `IN`
            // lets PostgreSQL hash the contacts who did it once; elsewhere
            // (under any_of or not) EXISTS probes each contact's events.
            let events = format!("FROM segmentation.events WHERE tenant_id = $1 AND {filter}");
            let own = "contact_id = p.contact_id";
            // For a few contacts, probing theirs beats hashing everyone's.
            let position = if self.scope.is_some() {
                Position::Nested
            } else {
                position
            };
            let matched = match (exists, position) {
                (true, Position::Conjunct) => {
                    format!("p.contact_id IN (SELECT contact_id {events})")
                }
                (true, Position::Nested) => format!("EXISTS (SELECT 1 {events} AND {own})"),
                (false, _) => format!("NOT EXISTS (SELECT 1 {events} AND {own})"),
            };
            return LeafSql {
                matched,
                observed: format!("(SELECT count(*) {events} AND {own})::text"),
                never_null: true,
            };
        }
        let aggregate = match &test.measure {
            Measure::Count => "count(*)::float8".to_owned(),
            Measure::Revenue(currency) => {
                let currency = self.param(Param::Text(currency.clone()));
                filter.push_str(&format!(" AND currency = {currency}"));
                "sum(revenue)::float8".to_owned()
            }
        };
        let alias = self.join(&aggregate, "segmentation.events", &filter);
        let threshold = self.param(Param::Float(test.threshold));
        LeafSql {
            matched: format!("coalesce({alias}.v, 0) {} {threshold}", sql_op(test.op)),
            observed: format!("coalesce({alias}.v, 0)::text"),
            never_null: false,
        }
    }

    /// LEFT JOINs `aggregate AS v` of `table`'s rows matching `filter`,
    /// per contact; returns the join's alias.
    fn join(&mut self, aggregate: &str, table: &str, filter: &str) -> String {
        let alias = self.next_alias();
        let scope = self.scope_filter();
        self.joins.push_str(&format!(
            " LEFT JOIN (SELECT contact_id, {aggregate} AS v FROM {table} \
             WHERE tenant_id = $1 AND {filter}{scope} GROUP BY contact_id) {alias} \
             ON {alias}.contact_id = p.contact_id"
        ));
        alias
    }

    fn next_alias(&mut self) -> String {
        let alias = format!("l{}", self.aliases);
        self.aliases += 1;
        alias
    }

    fn scope_filter(&self) -> String {
        self.scope
            .as_ref()
            .map(|ids| format!(" AND contact_id = ANY({ids})"))
            .unwrap_or_default()
    }

    fn text_set(&mut self, column: &str, values: &[String]) -> LeafSql {
        LeafSql {
            matched: format!(
                "{column} = ANY({})",
                self.param(Param::Texts(values.to_vec()))
            ),
            observed: column.to_owned(),
            never_null: false,
        }
    }

    /// `column` within `window` at compile time's `now`.
    fn within(&mut self, column: &str, window: Window) -> String {
        match window.bounds(self.now) {
            (None, None) => "true".to_owned(),
            (Some(from), None) => format!("{column} >= {}", self.param(Param::Time(from))),
            (None, Some(to)) => format!("{column} < {}", self.param(Param::Time(to))),
            (Some(from), Some(to)) => {
                let from = self.param(Param::Time(from));
                let to = self.param(Param::Time(to));
                format!("{column} >= {from} AND {column} < {to}")
            }
        }
    }
}

fn sql_op(op: NumberOp) -> &'static str {
    match op {
        NumberOp::Equals => "=",
        NumberOp::NotEquals => "<>",
        NumberOp::Order(order) => order.symbol(),
    }
}

#[cfg(test)]
mod tests;

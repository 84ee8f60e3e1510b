//! Query limits measured before execution (`[limits]`, SPEC §8): document size, root fields,
//! aliases, depth, and an estimated cost.
//!
//! Entry point: [`QueryLimits::check`], run by [`crate::graphql::guard`] on every request after
//! it is parsed and before it is validated or executed. Plain Rust with no I/O.
//!
//! **The cost** estimates what a query makes chatstats do, so a query that would fetch and
//! bucket years of hourly data for many aliases is refused before any upstream call:
//!
//! - every selected field costs 1;
//! - a field with a `window` argument adds the window's bucket count (from the series engine,
//!   with variables and defaults resolved; UTC when no `timeZone` is given) plus
//!   [`CHUNK_COST`] per estimated upstream chunk ([`CHUNK_DAYS`] days of window each);
//!   a window the engine refuses (empty, out of range, over 10,000 buckets) adds nothing,
//!   because its resolver refuses it before any upstream call;
//! - the cost of what is selected under a list field is multiplied by the list's expected
//!   length: the caller's visible workspace count for `workspaces`, [`LIST_FACTOR`] otherwise.
//!
//! Fragments are measured once each (memoised), so a document whose spreads repeat fragments
//! exponentially is measured in linear time; a fragment cycle (which validation rejects
//! anyway) counts as empty.
//!
//! Also here, for the guard: input async-graphql's validation lets through but execution
//! cannot use ([`missing_variable`], [`window_argument_error`]).

use std::collections::HashMap;

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet,
    ServiceDocument, TypeKind, TypeSystemDefinition,
};
use async_graphql::{Name, Value as ConstValue, Variables};
use chrono::{DateTime, Utc};

use crate::config::LimitsConfig;
use crate::series::{Granularity, Window, Zone};

/// Cost of one estimated upstream chunk (one provider call), on top of the buckets.
pub const CHUNK_COST: u64 = 10;
/// Days of window one upstream chunk is assumed to cover.
pub const CHUNK_DAYS: i64 = 30;
/// The assumed length of a list other than `workspaces`.
pub const LIST_FACTOR: u64 = 10;

/// Deepest bracket nesting (`{`, `[`, `(`) a document may have before it is parsed. The
/// parser is recursive: a few hundred nested list values exhaust a 2 MiB thread stack and
/// abort the process, so this is checked on the raw text first. Fixed rather than
/// configurable; any query within `max_depth` nests far less.
pub const MAX_NESTING: u64 = 64;

/// The deepest nesting of `{`, `[` and `(` in GraphQL text, outside strings and comments.
/// Linear and allocation-free; unbalanced text is measured as far as it goes.
pub fn nesting_depth(text: &str) -> u64 {
    const BLOCK: &[u8] = br#"""""#;
    const ESCAPED_BLOCK: &[u8] = br#"\""""#;
    let bytes = text.as_bytes();
    let (mut depth, mut deepest, mut i) = (0u64, 0u64, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(BLOCK) => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(BLOCK) {
                    i += if bytes[i..].starts_with(ESCAPED_BLOCK) {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// The `key` of the fixed [`MAX_NESTING`] limit.
pub const NESTING: &str = "nesting";

/// Deepest nesting of introspection list fields. Introspection answers grow with the product
/// of nested list lengths (`types { fields { type { fields { type { fields ...`), so a query
/// within `max_depth` could still ask for millions of entries at no upstream cost; GraphiQL's
/// own introspection query nests three (`types { fields { args } }`).
pub const MAX_INTROSPECTION_LISTS: u64 = 3;

/// The `key` of the fixed [`MAX_INTROSPECTION_LISTS`] limit.
pub const INTROSPECTION: &str = "introspection";

/// A limit a query went over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// What was measured, for the message: "query depth".
    pub what: &'static str,
    /// The `[limits]` key ("max_depth"), or [`NESTING`].
    pub key: &'static str,
    /// The configured limit.
    pub limit: u64,
    /// What the query has.
    pub measured: u64,
}

impl LimitExceeded {
    /// E.g. "query depth 14 exceeds the limit of 12 ([limits] max_depth); ...".
    pub fn message(&self) -> String {
        format!(
            "{} {} exceeds the limit of {} ({}); {}",
            self.what,
            self.measured,
            self.limit,
            self.setting()
                .map_or("a fixed limit".to_owned(), |key| format!("[limits] {key}")),
            self.advice()
        )
    }

    /// The `[limits]` key that sets this limit; `None` for the fixed nesting limit.
    pub fn setting(&self) -> Option<&'static str> {
        (self.key != NESTING && self.key != INTROSPECTION).then_some(self.key)
    }

    fn advice(&self) -> &'static str {
        match self.key {
            NESTING => "nest selections, lists and input objects less deeply",
            INTROSPECTION => "nest introspection lists at most three deep, as GraphiQL does",
            "max_cost" => "use shorter windows, coarser granularities or fewer series per query",
            "max_document_bytes" => "send a shorter document, or a persisted query",
            _ => "split the query into several smaller ones",
        }
    }
}

/// What a selection measures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measure {
    /// Deepest field nesting; a root field alone is depth 1.
    pub depth: u64,
    /// Deepest nesting of introspection list fields (`types { fields { args } }` is 3).
    pub introspection_lists: u64,
    /// Fields with an alias.
    pub aliases: u64,
    /// Fields at the top of the selection (through fragments).
    pub fields: u64,
    /// The estimated cost (see the module docs).
    pub cost: u64,
}

impl Measure {
    fn add(&mut self, other: Measure) {
        self.depth = self.depth.max(other.depth);
        self.introspection_lists = self.introspection_lists.max(other.introspection_lists);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.fields = self.fields.saturating_add(other.fields);
        self.cost = self.cost.saturating_add(other.cost);
    }
}

/// For every object and interface type: field name → (type name, is a list).
#[derive(Debug, Default)]
pub struct SchemaShape {
    fields: HashMap<String, HashMap<String, (String, bool)>>,
    query: String,
    mutation: String,
    subscription: String,
}

impl SchemaShape {
    /// Read the shape from SDL text (the schema's own `sdl()`).
    pub fn from_sdl(sdl: &str) -> SchemaShape {
        let mut shape = SchemaShape {
            query: "Query".into(),
            mutation: "Mutation".into(),
            subscription: "Subscription".into(),
            ..SchemaShape::default()
        };
        let Ok(document) = async_graphql::parser::parse_schema(sdl) else {
            return shape;
        };
        shape.read(&document);
        if let Ok(introspection) = async_graphql::parser::parse_schema(INTROSPECTION_SDL) {
            shape.read(&introspection);
        }
        let root = shape.fields.entry(shape.query.clone()).or_default();
        root.insert("__schema".into(), ("__Schema".into(), false));
        root.insert("__type".into(), ("__Type".into(), false));
        shape
    }

    fn read(&mut self, document: &ServiceDocument) {
        for definition in &document.definitions {
            match definition {
                TypeSystemDefinition::Schema(schema) => {
                    let schema = &schema.node;
                    if let Some(name) = &schema.query {
                        self.query = name.node.to_string();
                    }
                    if let Some(name) = &schema.mutation {
                        self.mutation = name.node.to_string();
                    }
                    if let Some(name) = &schema.subscription {
                        self.subscription = name.node.to_string();
                    }
                }
                TypeSystemDefinition::Type(ty) => {
                    let fields = match &ty.node.kind {
                        TypeKind::Object(object) => &object.fields,
                        TypeKind::Interface(interface) => &interface.fields,
                        _ => continue,
                    };
                    let entry = self
                        .fields
                        .entry(ty.node.name.node.to_string())
                        .or_default();
                    for field in fields {
                        let (name, list) = named(&field.node.ty.node.base);
                        entry.insert(field.node.name.node.to_string(), (name, list));
                    }
                }
                TypeSystemDefinition::Directive(_) => {}
            }
        }
    }

    fn field(&self, parent: &str, field: &str) -> Option<&(String, bool)> {
        self.fields.get(parent)?.get(field)
    }
}

/// The introspection types' fields that matter to the measure (the SDL omits them).
const INTROSPECTION_SDL: &str = "
    type __Schema { types: [__Type!]! queryType: __Type! mutationType: __Type
        subscriptionType: __Type directives: [__Directive!]! }
    type __Type { fields: [__Field!] interfaces: [__Type!] possibleTypes: [__Type!]
        enumValues: [__EnumValue!] inputFields: [__InputValue!] ofType: __Type }
    type __Field { args: [__InputValue!]! type: __Type! }
    type __InputValue { type: __Type! }
    type __Directive { args: [__InputValue!]! }
";

fn named(base: &BaseType) -> (String, bool) {
    match base {
        BaseType::Named(name) => (name.to_string(), false),
        BaseType::List(inner) => (named(&inner.base).0, true),
    }
}

/// The configured limits and what they are checked against.
#[derive(Debug)]
pub struct QueryLimits {
    pub config: LimitsConfig,
    pub shape: SchemaShape,
}

impl QueryLimits {
    /// `Err` when the document text is longer than `max_document_bytes`.
    pub fn check_size(&self, query: &str) -> Result<(), LimitExceeded> {
        over(
            "document size in bytes",
            "max_document_bytes",
            self.config.max_document_bytes as u64,
            query.len() as u64,
        )
    }

    /// `Err` when the document text nests deeper than [`MAX_NESTING`] (which the parser could
    /// not survive). A document the [`DocumentCache`](crate::graphql::document_cache) holds
    /// passed this once; it need not be walked again.
    pub fn check_nesting(&self, query: &str) -> Result<(), LimitExceeded> {
        over(
            "bracket nesting",
            NESTING,
            MAX_NESTING,
            nesting_depth(query),
        )
    }

    /// Measure the operation the request selects and compare it with every limit.
    /// `workspaces` is how many workspaces the caller sees (the length of `workspaces`).
    /// A document whose operation cannot be selected passes: execution reports that.
    pub fn check(
        &self,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
        workspaces: usize,
    ) -> Result<Measure, LimitExceeded> {
        let Some(operation) = select_operation(document, operation_name) else {
            return Ok(Measure::default());
        };
        let measure = measure_operation(&self.shape, document, operation, variables, workspaces);
        let limits = &self.config;
        over(
            "root field count",
            "max_root_fields",
            limits.max_root_fields as u64,
            measure.fields,
        )?;
        over(
            "alias count",
            "max_aliases",
            limits.max_aliases as u64,
            measure.aliases,
        )?;
        over(
            "query depth",
            "max_depth",
            limits.max_depth as u64,
            measure.depth,
        )?;
        over("estimated cost", "max_cost", limits.max_cost, measure.cost)?;
        over(
            "introspection list nesting",
            INTROSPECTION,
            MAX_INTROSPECTION_LISTS,
            measure.introspection_lists,
        )?;
        Ok(measure)
    }
}

fn over(
    what: &'static str,
    key: &'static str,
    limit: u64,
    measured: u64,
) -> Result<(), LimitExceeded> {
    if measured > limit {
        Err(LimitExceeded {
            what,
            key,
            limit,
            measured,
        })
    } else {
        Ok(())
    }
}

/// The operation a request runs: the named one, or the only one.
pub fn select_operation<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), None) => Some(&op.node),
        (DocumentOperations::Single(_), Some(_)) => None,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Measure one operation of `document`.
pub fn measure_operation(
    shape: &SchemaShape,
    document: &ExecutableDocument,
    operation: &OperationDefinition,
    variables: &Variables,
    workspaces: usize,
) -> Measure {
    use async_graphql::parser::types::OperationType;
    // Variables the request leaves out take their declared defaults.
    let mut values: HashMap<Name, ConstValue> = HashMap::new();
    for definition in &operation.variable_definitions {
        if let Some(default) = &definition.node.default_value {
            values.insert(definition.node.name.node.clone(), default.node.clone());
        }
    }
    for (name, value) in variables.iter() {
        values.insert(name.clone(), value.clone());
    }
    let root = match operation.ty {
        OperationType::Query => &shape.query,
        OperationType::Mutation => &shape.mutation,
        OperationType::Subscription => &shape.subscription,
    };
    let mut walker = Walker {
        shape,
        document,
        variables: &values,
        workspaces: workspaces as u64,
        fragments: HashMap::new(),
    };
    walker.selection_set(&operation.selection_set.node, root)
}

struct Walker<'a> {
    shape: &'a SchemaShape,
    document: &'a ExecutableDocument,
    variables: &'a HashMap<Name, ConstValue>,
    workspaces: u64,
    /// Measured fragments; `None` while one is being measured (a cycle).
    fragments: HashMap<&'a str, Option<Measure>>,
}

impl<'a> Walker<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, parent: &str) -> Measure {
        let mut total = Measure::default();
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    let (ty, list) = self.shape.field(parent, name).cloned().unwrap_or_default();
                    let below = self.selection_set(&field.selection_set.node, &ty);
                    // Introspection lists cost nothing upstream; their nesting is limited instead.
                    let introspection_list = list && ty.starts_with("__");
                    let factor = match (list, parent == self.shape.query && name == "workspaces") {
                        _ if introspection_list => 1,
                        (true, true) => self.workspaces,
                        (true, false) => LIST_FACTOR,
                        (false, _) => 1,
                    };
                    let window = field
                        .arguments
                        .iter()
                        .find(|(arg, _)| arg.node.as_str() == "window")
                        .map_or(0, |(_, value)| {
                            let value = value.node.clone().into_const_with(|name| {
                                self.variables.get(&name).cloned().ok_or(())
                            });
                            value.map_or(0, |value| window_cost(&value))
                        });
                    total.add(Measure {
                        depth: below.depth + 1,
                        introspection_lists: below.introspection_lists
                            + u64::from(introspection_list),
                        aliases: below.aliases + u64::from(field.alias.is_some()),
                        fields: 1,
                        cost: 1u64
                            .saturating_add(window)
                            .saturating_add(below.cost.saturating_mul(factor)),
                    });
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    total.add(self.fragment(name));
                }
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    let ty = inline
                        .type_condition
                        .as_ref()
                        .map_or(parent.to_owned(), |c| c.node.on.node.to_string());
                    total.add(self.selection_set(&inline.selection_set.node, &ty));
                }
            }
        }
        total
    }

    fn fragment(&mut self, name: &'a str) -> Measure {
        match self.fragments.get(name) {
            Some(Some(measure)) => return *measure,
            Some(None) => return Measure::default(),
            None => {}
        }
        let Some(fragment) = self.document.fragments.get(name) else {
            return Measure::default();
        };
        self.fragments.insert(name, None);
        let ty = fragment.node.type_condition.node.on.node.to_string();
        let measure = self.selection_set(&fragment.node.selection_set.node, &ty);
        self.fragments.insert(name, Some(measure));
        measure
    }
}

/// Buckets plus chunk calls of a `Window` argument value; 0 when the engine would refuse it.
pub fn window_cost(value: &ConstValue) -> u64 {
    let ConstValue::Object(fields) = value else {
        return 0;
    };
    let instant = |key: &str| match fields.get(key) {
        Some(ConstValue::String(text)) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    };
    let (Some(from), Some(to)) = (instant("from"), instant("to")) else {
        return 0;
    };
    let granularity = match fields.get("granularity") {
        None | Some(ConstValue::Null) => Some("DAY"),
        Some(ConstValue::Enum(name)) => Some(name.as_str()),
        Some(ConstValue::String(name)) => Some(name.as_str()),
        Some(_) => None,
    }
    .and_then(|name| match name {
        "HOUR" => Some(Granularity::Hour),
        "DAY" => Some(Granularity::Day),
        "WEEK" => Some(Granularity::Week),
        "MONTH" => Some(Granularity::Month),
        "YEAR" => Some(Granularity::Year),
        _ => None,
    });
    let zone = match fields.get("timeZone") {
        None | Some(ConstValue::Null) => Some(Zone::utc()),
        Some(ConstValue::String(text)) => Zone::parse(text).ok(),
        Some(_) => None,
    };
    let (Some(granularity), Some(zone)) = (granularity, zone) else {
        return 0;
    };
    let Ok(window) = Window::new(from, to, granularity, zone) else {
        return 0;
    };
    let days = (window.to() - window.from()).num_days().max(0);
    let chunks = (days / CHUNK_DAYS + 1) as u64;
    (window.len() as u64).saturating_add(chunks.saturating_mul(CHUNK_COST))
}

/// The first variable `operation` requires (non-null, without a default) that `variables`
/// leave out or give as null. async-graphql's validation does not check this, and execution
/// would fail each field that reads it with "Variable x is not defined.", without a code.
pub fn missing_variable(operation: &OperationDefinition, variables: &Variables) -> Option<String> {
    operation
        .variable_definitions
        .iter()
        .find_map(|definition| {
            let definition = &definition.node;
            let name = &definition.name.node;
            let given = variables
                .get(name)
                .is_some_and(|value| *value != ConstValue::Null);
            let required = !definition.var_type.node.nullable && definition.default_value.is_none();
            (required && !given).then(|| {
                format!(
                    "variable `${name}` of type `{}` is required, and the request's `variables` \
                 do not give it",
                    definition.var_type.node
                )
            })
        })
}

/// Why a `window` argument's value cannot become a `Window`, for the shapes async-graphql's
/// validation lets through: it accepts any value for a custom scalar (`DateTime`, `TimeZone`)
/// and any non-object for an input object, so `window: 5` or `from: 5` would fail only while
/// the resolver reads its arguments, as an error without a code. `None` when the value has
/// the shape; what its strings say is checked by the scalars and the engine, with codes.
pub fn window_shape_error(value: &ConstValue) -> Option<String> {
    let ConstValue::Object(fields) = value else {
        return Some(format!(
            "argument `window` must be an object such as {{from: \"2025-03-01T00:00:00Z\", \
             to: \"2025-03-08T00:00:00Z\"}}, not {}",
            brief(value)
        ));
    };
    for (key, what) in [
        (
            "from",
            "an RFC 3339 instant such as \"2025-03-01T00:00:00Z\"",
        ),
        ("to", "an RFC 3339 instant such as \"2025-03-08T00:00:00Z\""),
        (
            "timeZone",
            "a time zone name or offset such as \"Europe/Madrid\" or \"+10:00\"",
        ),
    ] {
        match fields.get(key) {
            // Missing or null: validation reports a missing required field.
            None | Some(ConstValue::Null) | Some(ConstValue::String(_)) => {}
            Some(other) => {
                return Some(format!(
                    "argument `window`: `{key}` must be a string, {what}, not {}",
                    brief(other)
                ))
            }
        }
    }
    None
}

/// A value as GraphQL text, cut short: error messages echo at most this much of the input.
fn brief(value: &ConstValue) -> String {
    const MAX_CHARS: usize = 40;
    let text = value.to_string();
    if text.chars().count() <= MAX_CHARS {
        text
    } else {
        format!("{}…", text.chars().take(MAX_CHARS).collect::<String>())
    }
}

/// The first `window` argument of `operation`, or of any fragment of `document`, whose value
/// (variables and their defaults resolved) fails [`window_shape_error`]; every `window`
/// argument of the schema is a `Window!`. Walks each selection once, so it is linear in the
/// document; its recursion is bounded by [`MAX_NESTING`], checked before parsing.
pub fn window_argument_error(
    document: &ExecutableDocument,
    operation: &OperationDefinition,
    variables: &Variables,
) -> Option<String> {
    let mut values: HashMap<Name, ConstValue> = HashMap::new();
    for definition in &operation.variable_definitions {
        if let Some(default) = &definition.node.default_value {
            values.insert(definition.node.name.node.clone(), default.node.clone());
        }
    }
    for (name, value) in variables.iter() {
        values.insert(name.clone(), value.clone());
    }
    fn walk(set: &SelectionSet, values: &HashMap<Name, ConstValue>) -> Option<String> {
        set.items.iter().find_map(|item| match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                field
                    .arguments
                    .iter()
                    .filter(|(name, _)| name.node.as_str() == "window")
                    .find_map(|(_, value)| {
                        // A variable not given is reported by async-graphql itself.
                        let value = value
                            .node
                            .clone()
                            .into_const_with(|name| values.get(&name).cloned().ok_or(()))
                            .ok()?;
                        window_shape_error(&value)
                    })
                    .or_else(|| walk(&field.selection_set.node, values))
            }
            Selection::InlineFragment(inline) => walk(&inline.node.selection_set.node, values),
            Selection::FragmentSpread(_) => None,
        })
    }
    walk(&operation.selection_set.node, &values).or_else(|| {
        document
            .fragments
            .values()
            .find_map(|fragment| walk(&fragment.node.selection_set.node, &values))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDL: &str = r#"
        type Query { workspaces: [Workspace!]! workspace(id: ID!): Workspace }
        type Workspace { id: ID! messages: MessageStats! channels: [Channel!]! }
        type Channel { id: ID! messages: MessageStats! }
        type MessageStats { sent(window: Window!): TimeSeries! }
        type TimeSeries { total: Float points: [Point!]! }
        type Point { at: String value: Float }
        input Window { from: String! to: String! granularity: Granularity timeZone: String }
        enum Granularity { HOUR DAY WEEK MONTH YEAR }
    "#;

    fn limits(edit: impl FnOnce(&mut LimitsConfig)) -> QueryLimits {
        let mut config = LimitsConfig::default();
        edit(&mut config);
        QueryLimits {
            config,
            shape: SchemaShape::from_sdl(SDL),
        }
    }

    fn measure(query: &str, variables: serde_json::Value, workspaces: usize) -> Measure {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        limits(|_| {})
            .check(
                &document,
                None,
                &Variables::from_json(variables),
                workspaces,
            )
            .expect("within the default limits")
    }

    const JANUARY: &str =
        r#"{from: "2025-01-01T00:00:00Z", to: "2025-02-01T00:00:00Z", granularity: DAY}"#;

    #[test]
    fn a_window_costs_its_buckets_and_its_chunks() {
        let query = format!(
            r#"{{ workspace(id: "a") {{ messages {{ sent(window: {JANUARY}) {{ total }} }} }} }}"#
        );
        let m = measure(&query, serde_json::json!({}), 1);
        // 4 fields of 1, plus 31 buckets and 2 chunks (31 days / 30, rounded up by one).
        assert_eq!(m.cost, 4 + 31 + 2 * CHUNK_COST);
        assert_eq!((m.depth, m.aliases, m.fields), (4, 0, 1));
    }

    #[test]
    fn variables_and_defaults_are_resolved() {
        let query = r#"query($w: Window! = {from: "2025-01-01T00:00:00Z", to: "2025-01-02T00:00:00Z", granularity: HOUR}) {
            workspace(id: "a") { messages { sent(window: $w) { total } } } }"#;
        let by_default = measure(query, serde_json::json!({}), 1);
        assert_eq!(by_default.cost, 4 + 24 + CHUNK_COST);
        let given = measure(
            query,
            serde_json::json!({"w": {"from": "2025-01-01T00:00:00Z", "to": "2025-01-03T00:00:00Z", "granularity": "HOUR"}}),
            1,
        );
        assert_eq!(given.cost, 4 + 48 + CHUNK_COST);
    }

    #[test]
    fn lists_multiply_what_is_below_them() {
        let inner = format!("messages {{ sent(window: {JANUARY}) {{ total }} }}");
        let one = measure(
            &format!(r#"{{ workspace(id: "a") {{ {inner} }} }}"#),
            serde_json::json!({}),
            3,
        );
        let all = measure(
            &format!("{{ workspaces {{ {inner} }} }}"),
            serde_json::json!({}),
            3,
        );
        assert_eq!(all.cost - 1, (one.cost - 1) * 3, "three visible workspaces");
        let channels = measure(
            &format!("{{ workspaces {{ channels {{ {inner} }} }} }}"),
            serde_json::json!({}),
            1,
        );
        assert_eq!(channels.cost, 1 + 1 + (one.cost - 1) * LIST_FACTOR);
    }

    fn window_error(query: &str, variables: serde_json::Value) -> Option<String> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        let operation = select_operation(&document, None).expect("one operation");
        window_argument_error(&document, operation, &Variables::from_json(variables))
    }

    #[test]
    fn a_window_that_is_not_an_object_of_strings_is_named_before_execution() {
        for (window, named) in [
            ("5", "must be an object"),
            (r#""2025-01-01T00:00:00Z""#, "must be an object"),
            ("[1, 2]", "must be an object"),
            (
                r#"{from: 5, to: "2025-01-02T00:00:00Z"}"#,
                "`from` must be a string",
            ),
            (
                r#"{from: "2025-01-01T00:00:00Z", to: [1]}"#,
                "`to` must be a string",
            ),
            (
                r#"{from: "x", to: "y", timeZone: true}"#,
                "`timeZone` must be a string",
            ),
            (
                r#"{from: "x", to: "y", timeZone: {zz: 1}}"#,
                "`timeZone` must be a string",
            ),
        ] {
            for query in [
                format!(
                    r#"{{ workspace(id: "a") {{ messages {{ sent(window: {window}) {{ total }} }} }} }}"#
                ),
                format!(
                    r#"{{ ...F }} fragment F on Query {{ workspaces {{ ... on Workspace {{ messages {{ sent(window: {window}) {{ total }} }} }} }} }}"#
                ),
            ] {
                let error = window_error(&query, serde_json::json!({}))
                    .unwrap_or_else(|| panic!("no error for {query}"));
                assert!(error.contains(named), "{error} for {window}");
            }
        }
        let long = format!(
            r#"{{ workspace(id: "a") {{ messages {{ sent(window: [{}]) {{ total }} }} }} }}"#,
            "1, ".repeat(1_000)
        );
        let error = window_error(&long, serde_json::json!({})).expect("an error");
        assert!(error.len() < 200, "the value is echoed cut short: {error}");
    }

    #[test]
    fn a_required_variable_left_out_or_null_is_named() {
        let query = r#"query($from: DateTime!, $to: DateTime!, $zone: TimeZone, $g: Granularity! = DAY) {
            workspace(id: "a") { messages { sent(window: {from: $from, to: $to, timeZone: $zone, granularity: $g}) { total } } } }"#;
        let document = async_graphql::parser::parse_query(query).expect("parses");
        let operation = select_operation(&document, None).expect("one operation");
        let missing = |variables: serde_json::Value| {
            missing_variable(operation, &Variables::from_json(variables))
        };
        let error = missing(serde_json::json!({"from": "a"})).expect("`to` is missing");
        assert!(error.contains("`$to` of type `DateTime!`"), "{error}");
        assert!(missing(serde_json::json!({"from": "a", "to": null})).is_some());
        // Nullable and defaulted variables may be left out.
        assert_eq!(missing(serde_json::json!({"from": "a", "to": "b"})), None);
    }

    #[test]
    fn well_shaped_windows_and_variables_pass_the_shape_check() {
        let query = format!(
            r#"{{ workspace(id: "a") {{ messages {{ sent(window: {JANUARY}) {{ total }} }} }} }}"#
        );
        assert_eq!(window_error(&query, serde_json::json!({})), None);
        // Strings the scalars refuse are theirs to report (coded), not the shape check's.
        let nonsense = r#"{ workspace(id: "a") { messages { sent(window: {from: "x", to: "y", timeZone: "Mars/Olympus"}) { total } } } }"#;
        assert_eq!(window_error(nonsense, serde_json::json!({})), None);
        let with_variable = r#"query($w: Window!) { workspace(id: "a") { messages { sent(window: $w) { total } } } }"#;
        assert_eq!(
            window_error(
                with_variable,
                serde_json::json!({"w": {"from": "a", "to": "b"}})
            ),
            None
        );
        assert!(window_error(with_variable, serde_json::json!({"w": 5})).is_some());
        // A variable not given is async-graphql's to report.
        assert_eq!(window_error(with_variable, serde_json::json!({})), None);
    }

    #[test]
    fn windows_the_engine_refuses_cost_nothing_extra() {
        for window in [
            r#"{from: "2025-02-01T00:00:00Z", to: "2025-01-01T00:00:00Z"}"#,
            r#"{from: "2020-01-01T00:00:00Z", to: "2048-01-01T00:00:00Z", granularity: DAY}"#,
            r#"{from: "nonsense", to: "2048-01-01T00:00:00Z"}"#,
            r#"{from: "2020-01-01T00:00:00Z", to: "2021-01-01T00:00:00Z", timeZone: "Mars/Olympus"}"#,
        ] {
            let query = format!(
                r#"{{ workspace(id: "a") {{ messages {{ sent(window: {window}) {{ total }} }} }} }}"#
            );
            assert_eq!(
                measure(&query, serde_json::json!({}), 1).cost,
                4,
                "{window}"
            );
        }
    }

    #[test]
    fn fragments_count_where_they_are_spread_and_are_measured_once() {
        let query = r#"
            query { workspaces { ...W } a: workspace(id: "x") { ...W } }
            fragment W on Workspace { b: id c: id channels { ...C } }
            fragment C on Channel { id }
        "#;
        let m = measure(query, serde_json::json!({}), 2);
        assert_eq!(m.fields, 2);
        assert_eq!(m.aliases, 1 + 2 * 2);
        assert_eq!(m.depth, 3);
        // Exponential spreading is measured without expanding it.
        let mut bomb = String::from("query { ...F0 }\n");
        for i in 0..40 {
            bomb.push_str(&format!(
                "fragment F{i} on Query {{ ...F{} ...F{} }}\n",
                i + 1,
                i + 1
            ));
        }
        bomb.push_str("fragment F40 on Query { __typename }\n");
        let document = async_graphql::parser::parse_query(&bomb).expect("parses");
        let error = limits(|_| {})
            .check(&document, None, &Variables::default(), 1)
            .expect_err("2^40 root fields");
        assert_eq!(error.key, "max_root_fields");
        assert_eq!(error.measured, 1 << 40);
    }

    #[test]
    fn nesting_is_measured_outside_strings_and_comments() {
        assert_eq!(nesting_depth("{ a { b(x: [[1]]) } }"), 5);
        assert_eq!(nesting_depth(r#"{ a(s: "{{{[[[") }"#), 2);
        assert_eq!(nesting_depth("{ a # {{{{\n }"), 1);
        assert_eq!(nesting_depth(r#"{ a(s: """ {{{ \""" [[[ """) }"#), 2);
        assert_eq!(nesting_depth(r#"{ a(s: "\" {{{") }"#), 2);
        assert_eq!(nesting_depth(&"[".repeat(10_000)), 10_000);
        assert_eq!(nesting_depth(""), 0);
        let error = limits(|_| {})
            .check_nesting(&format!(
                "{{ a(x: {}1{}) }}",
                "[".repeat(63),
                "]".repeat(63)
            ))
            .expect_err("65 levels");
        assert_eq!((error.limit, error.measured), (64, 65));
        assert!(
            error.message().contains("(a fixed limit)"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn introspection_lists_nest_at_most_three_deep_and_cost_no_multiple() {
        let check = |query: &str| {
            let document = async_graphql::parser::parse_query(query).expect("parses");
            limits(|_| {}).check(&document, None, &Variables::default(), 1)
        };
        let graphiql = check(
            "{ __schema { types { name fields { name args { name type { ofType { name } } } } } } }",
        )
        .expect("GraphiQL's shape");
        assert_eq!(graphiql.introspection_lists, 3);
        assert_eq!(graphiql.cost, 10, "one per field, no list multiple");
        assert!(check("{ __schema { types { fields { type { fields { name } } } } } }").is_ok());
        let error = check(
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }",
        )
        .expect_err("four nested lists");
        assert_eq!(
            (error.key, error.limit, error.measured),
            (INTROSPECTION, 3, 4)
        );
        assert!(error.message().contains("(a fixed limit)"));
        let by_type = check(r#"{ __type(name: "Query") { fields { type { fields { type { interfaces { possibleTypes { name } } } } } } } }"#)
            .expect_err("four nested lists under __type");
        assert_eq!(by_type.measured, 4);
    }

    #[test]
    fn the_parser_survives_the_nesting_limit_on_a_two_mib_stack() {
        // Tokio's worker threads have 2 MiB stacks; so does this one.
        let deepest = format!(
            "{{ a(x: {}1{}) }}",
            "[".repeat(MAX_NESTING as usize - 2),
            "]".repeat(MAX_NESTING as usize - 2)
        );
        assert_eq!(nesting_depth(&deepest), MAX_NESTING);
        let parsed = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || async_graphql::parser::parse_query(&deepest).is_ok())
            .expect("thread starts")
            .join()
            .expect("no overflow");
        assert!(parsed);
    }

    #[test]
    fn a_fragment_cycle_terminates() {
        let query =
            "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A __typename }";
        let m = measure(query, serde_json::json!({}), 1);
        assert_eq!(m.fields, 1);
    }

    #[test]
    fn each_limit_names_itself_and_the_measured_value() {
        let document = async_graphql::parser::parse_query(
            "{ a: workspaces { b: id } c: workspace(id: \"x\") { d: id } }",
        )
        .expect("parses");
        let check = |edit: fn(&mut LimitsConfig)| {
            limits(edit).check(&document, None, &Variables::default(), 1)
        };
        let error = check(|l| l.max_aliases = 3).expect_err("4 aliases");
        assert_eq!(
            error.message(),
            "alias count 4 exceeds the limit of 3 ([limits] max_aliases); split the query into several smaller ones"
        );
        assert!(check(|l| l.max_aliases = 4).is_ok());
        assert_eq!(check(|l| l.max_depth = 1).expect_err("depth").measured, 2);
        assert!(check(|l| l.max_depth = 2).is_ok());
        assert_eq!(
            check(|l| l.max_root_fields = 1)
                .expect_err("fields")
                .measured,
            2
        );
        assert!(check(|l| l.max_root_fields = 2).is_ok());
        assert_eq!(check(|l| l.max_cost = 3).expect_err("cost").measured, 4);
        assert!(check(|l| l.max_cost = 4).is_ok());
        let size = limits(|l| l.max_document_bytes = 4);
        assert!(size.check_size("abcd").is_ok());
        assert_eq!(size.check_size("abcde").expect_err("5 bytes").measured, 5);
    }
}

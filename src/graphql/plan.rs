//! Compiled plans: a held query executed without async-graphql's per-request machinery.
//!
//! async-graphql executes a request by cloning its document, validating it again (in its fast
//! mode for a request that passed full validation before), parsing every field's arguments
//! and resolving every field as its own future with its own context. For a dashboard of
//! twenty-odd series whose data is all cached, that machinery was most of the resolved path's
//! CPU. A [`Plan`] is the operation compiled once per document: each field already classified
//! (which series, which spec, which plain selection of `TimeSeries`), each argument already
//! typed, and the `window` arguments interned so that a request binds each distinct one once.
//!
//! Only the fields dashboards ask are compiled: `Query.workspace`, the `Workspace` scalars and
//! `sources`, the statistic groups and their series, `channel(id:)` with its scalars and series,
//! `bots` with `id`, `name` and `metric`, and the plain selections of `TimeSeries`. A document
//! with anything else (fragments, directives, variables outside `window`, other fields) has no
//! plan and runs on async-graphql. A request runs on a plan only when it passed async-graphql's
//! full validation before (see [`crate::graphql::document_cache`]), so every text a plan sees
//! is valid; binding its windows falling short in any way (a variable missing, a value that
//! does not parse) also hands the request to async-graphql, which says what is wrong.
//!
//! What a plan answers is what async-graphql answers, resolver for resolver: the same specs
//! (`StatSeries`, `ChannelSeries`, `Bot::metric_spec`), the same series answers
//! ([`time_series::answer`]), the same errors at the same paths, and async-graphql's rule for
//! a field whose resolver fails: the field is left out of its object (an object left empty is
//! null). The api tests compare the two executors' answers on every example and on errors.
//! One difference is deliberate: a plan writes an object's fields in the order the document
//! selects them, where async-graphql writes them as they complete.

use std::sync::{Arc, Mutex};

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    ExecutableDocument, Field as FieldSyntax, OperationType, SelectionSet,
};
use async_graphql::resolver_utils::enum_value;
use async_graphql::{InputType, Name, PathSegment, Pos, ScalarType, ServerError, Value, Variables};
/// A value as written in the document: a literal or a variable.
use async_graphql_value::Value as Written;
use futures::future::{join_all, BoxFuture};
use futures::FutureExt;

use crate::auth::Caller;
use crate::catalogue::SeriesSpec;
use crate::error::ApiError;
use crate::fetch::Fetcher;
use crate::graphql::bot::{self, Bot, BotMetric};
use crate::graphql::channel::{Channel, ChannelSeries};
use crate::graphql::scalars::TimeZone;
use crate::graphql::stats::{DialogType, StatSeries};
use crate::graphql::time_series::{self, Answered, Needs, SeriesField, TimeSeries};
use crate::graphql::window::WindowInput;
use crate::graphql::workspace::sources_shown;
use crate::limits::select_operation;
use crate::providers::{ConversationFilter, Provider};
use crate::workspace::{Registry, Workspace};

/// One operation of a held document, compiled (see the module doc).
pub struct Plan {
    root: Vec<Node>,
    /// The distinct `window` arguments, as written (literals or variables).
    windows: Vec<Written>,
    /// The operation's variables with their default values.
    defaults: Vec<(Name, Option<Value>)>,
}

/// One selected field by its response key: where it is in the document, and what it resolves.
type Node = (Name, Field);

/// A selected field: where it is in the document, and what it resolves.
struct Field {
    pos: Pos,
    step: Step,
}

/// What a field resolves, by the type it is selected on.
enum Step {
    /// `__typename`: the name of the type it is selected on.
    Typename(&'static str),
    /// `Query.workspace(id:)`.
    Workspace { id: String, fields: Vec<Node> },
    /// `Workspace.id`, `name`, `timeZone`.
    WorkspaceScalar(WorkspaceScalar),
    /// `Workspace.sources`: each field of `Source` by name.
    Sources(Vec<(Name, Option<&'static str>)>),
    /// `Workspace.users`, `dialogs`, `messages`, `satisfaction`, and `DialogStats.serviceLevel`
    /// (whose series carry its window): an object of series.
    Group(Vec<Node>),
    /// A series of a group.
    Stat {
        which: StatSeries,
        window: usize,
        provider: Option<Provider>,
        types: Option<Vec<DialogType>>,
        series: SeriesSelection,
    },
    /// `Workspace.channel(id:)`.
    Channel { id: String, fields: Vec<Node> },
    /// `Channel.id`, `kind`, `name`, `provider`.
    ChannelScalar(ChannelScalar),
    /// A series of a channel.
    ChannelSeries {
        which: ChannelSeries,
        window: usize,
        filter: ConversationFilter,
        series: SeriesSelection,
    },
    /// `Workspace.bots`.
    Bots(Vec<Node>),
    /// `Bot.id`, `name`.
    BotScalar(BotScalar),
    /// `Bot.channels`.
    BotChannels(Vec<Node>),
    /// `Bot.metric(kind:, window:, channel:)`.
    BotMetric {
        kind: BotMetric,
        window: usize,
        channel: Option<String>,
        series: SeriesSelection,
    },
}

#[derive(Clone, Copy)]
enum WorkspaceScalar {
    Id,
    Name,
    TimeZone,
}

#[derive(Clone, Copy)]
enum ChannelScalar {
    Id,
    Kind,
    Name,
    Provider,
}

#[derive(Clone, Copy)]
enum BotScalar {
    Id,
    Name,
}

/// The plain selection of a `TimeSeries`, what it needs computed, and its specs.
struct SeriesSelection {
    fields: Vec<(Name, SeriesField)>,
    needs: Needs,
    specs: Specs,
}

/// The specs a series field was last built with, by workspace (and bot): a spec is a function
/// of the workspace's configuration and the field's arguments, and its parts keep their key
/// texts ([`crate::catalogue::Part`]), so a plan builds each once per configuration. A reload
/// makes new workspaces, whose specs are built anew.
#[derive(Default)]
struct Specs(Mutex<Vec<KnownSpec>>);

struct KnownSpec {
    workspace: Arc<Workspace>,
    bot: Option<String>,
    spec: SeriesSpec,
}

impl Specs {
    /// Entries kept at most (one per bot a `metric` field is asked for).
    const MAX: usize = 64;

    /// The spec for `workspace` and `bot`, built by `build` when not known.
    fn get(
        &self,
        workspace: &Arc<Workspace>,
        bot: Option<&str>,
        build: impl FnOnce() -> SeriesSpec,
    ) -> SeriesSpec {
        let mut specs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let known = specs
            .iter()
            .find(|known| Arc::ptr_eq(&known.workspace, workspace) && known.bot.as_deref() == bot);
        if let Some(known) = known {
            return known.spec.clone();
        }
        let spec = build();
        // Specs of a workspace a reload replaced are not asked again.
        specs.retain(|known| Arc::ptr_eq(&known.workspace, workspace));
        if specs.len() >= Self::MAX {
            specs.clear();
        }
        specs.push(KnownSpec {
            workspace: workspace.clone(),
            bot: bot.map(str::to_owned),
            spec: spec.clone(),
        });
        spec
    }
}

/// The GraphQL types a plan resolves fields on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parent {
    Query,
    Workspace,
    /// A statistic group, with the window of `serviceLevel`.
    Group(Group, Option<usize>),
    Channel,
    Bot,
}

/// The objects of series: `Workspace.users`, `dialogs`, `messages`, `satisfaction`, and
/// `DialogStats.serviceLevel`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    Users,
    Dialogs,
    Messages,
    Satisfaction,
    ServiceLevel,
}

impl Group {
    /// The group `Workspace.<field>` selects.
    fn of(field: &str) -> Option<Group> {
        Some(match field {
            "users" => Group::Users,
            "dialogs" => Group::Dialogs,
            "messages" => Group::Messages,
            "satisfaction" => Group::Satisfaction,
            _ => return None,
        })
    }

    /// Its field name, as [`StatSeries::of`] takes it.
    fn field(self) -> &'static str {
        match self {
            Group::Users => "users",
            Group::Dialogs => "dialogs",
            Group::Messages => "messages",
            Group::Satisfaction => "satisfaction",
            Group::ServiceLevel => "serviceLevel",
        }
    }
}

impl Parent {
    fn type_name(self) -> &'static str {
        match self {
            Parent::Query => "Query",
            Parent::Workspace => "Workspace",
            Parent::Group(Group::Users, _) => "UserStats",
            Parent::Group(Group::Dialogs, _) => "DialogStats",
            Parent::Group(Group::Messages, _) => "MessageStats",
            Parent::Group(Group::Satisfaction, _) => "SatisfactionStats",
            Parent::Group(Group::ServiceLevel, _) => "ServiceLevel",
            Parent::Channel => "Channel",
            Parent::Bot => "Bot",
        }
    }
}

/// Compiling: None wherever the document asks something a plan does not answer.
struct Compiler {
    windows: Vec<Written>,
}

impl Plan {
    /// The plan of `operation_name` in `document`, or None when it has none (see the module
    /// doc).
    pub fn compile(document: &ExecutableDocument, operation_name: Option<&str>) -> Option<Plan> {
        let operation = select_operation(document, operation_name)?;
        if operation.ty != OperationType::Query || !operation.directives.is_empty() {
            return None;
        }
        let mut compiler = Compiler {
            windows: Vec::new(),
        };
        let root = compiler.selection(&operation.selection_set.node, Parent::Query)?;
        let defaults = operation
            .variable_definitions
            .iter()
            .map(|definition| {
                let definition = &definition.node;
                let default = definition.default_value.as_ref().map(|v| v.node.clone());
                (definition.name.node.clone(), default)
            })
            .collect();
        Some(Plan {
            root,
            windows: compiler.windows,
            defaults,
        })
    }

    /// Execute the plan for one request of the HTTP transport (its series are answered as
    /// JSON text: see [`crate::graphql::raw_json`]); None when its windows cannot be bound
    /// (the request is then for async-graphql, which reports why).
    pub async fn execute(
        &self,
        registry: &Registry,
        caller: &Caller,
        fetcher: &Fetcher,
        variables: &Variables,
    ) -> Option<async_graphql::Response> {
        let windows = self
            .windows
            .iter()
            .map(|window| self.bind(window, variables))
            .collect::<Option<Vec<_>>>()?;
        let run = Run {
            registry,
            caller,
            fetcher,
            windows,
            errors: Mutex::new(Vec::new()),
        };
        let data = run.object(&self.root, &Object::Query, None).await;
        let mut response = async_graphql::Response::new(data);
        response.errors = run.errors.into_inner().unwrap_or_else(|e| e.into_inner());
        Some(response)
    }

    /// A `window` argument with the request's variables, typed.
    fn bind(&self, window: &Written, variables: &Variables) -> Option<WindowInput> {
        let mut missing = false;
        let value = window.clone().into_const_with(|name| {
            let value = variables.get(&name).cloned().or_else(|| {
                self.defaults
                    .iter()
                    .find(|(defined, _)| *defined == name)
                    .and_then(|(_, default)| default.clone())
            });
            missing |= value.is_none();
            Ok::<_, ()>(value.unwrap_or_default())
        });
        match value {
            Ok(value) if !missing => WindowInput::parse(Some(value)).ok(),
            _ => None,
        }
    }
}

impl Compiler {
    /// The fields of `selection_set` on `parent`.
    fn selection(&mut self, selection_set: &SelectionSet, parent: Parent) -> Option<Vec<Node>> {
        time_series::plain_fields(selection_set, |field| {
            Some(Field {
                pos: field.pos,
                step: self.step(&field.node, parent)?,
            })
        })
    }

    fn step(&mut self, field: &FieldSyntax, parent: Parent) -> Option<Step> {
        let name = field.name.node.as_str();
        let selection_set = &field.selection_set.node;
        let leaf = selection_set.items.is_empty();
        let arguments_in = |allowed: &[&str]| {
            field
                .arguments
                .iter()
                .all(|(name, _)| allowed.contains(&name.node.as_str()))
        };
        if name == "__typename" {
            return Some(Step::Typename(parent.type_name()));
        }
        let series = |field: &FieldSyntax| {
            let fields = TimeSeries::plain_fields(&field.selection_set.node, true)?;
            let needs = Needs::of_plain(&fields);
            Some(SeriesSelection {
                fields,
                needs,
                specs: Specs::default(),
            })
        };
        Some(match (parent, name) {
            (Parent::Query, "workspace") if arguments_in(&["id"]) => Step::Workspace {
                id: literal::<async_graphql::ID>(field, "id")?.0,
                fields: self.selection(selection_set, Parent::Workspace)?,
            },
            (Parent::Workspace, "id") if leaf => Step::WorkspaceScalar(WorkspaceScalar::Id),
            (Parent::Workspace, "name") if leaf => Step::WorkspaceScalar(WorkspaceScalar::Name),
            (Parent::Workspace, "timeZone") if leaf => {
                Step::WorkspaceScalar(WorkspaceScalar::TimeZone)
            }
            (Parent::Workspace, "sources") => Step::Sources(source_fields(selection_set)?),
            (Parent::Workspace, name) if Group::of(name).is_some() => {
                let group = Group::of(name)?;
                Step::Group(self.selection(selection_set, Parent::Group(group, None))?)
            }
            (Parent::Group(Group::Dialogs, None), "serviceLevel") if arguments_in(&["window"]) => {
                let service_level = Parent::Group(Group::ServiceLevel, Some(self.window(field)?));
                Step::Group(self.selection(selection_set, service_level)?)
            }
            (Parent::Group(group, service_level), name) => {
                if !arguments_in(&["window", "provider", "types"]) {
                    return None;
                }
                Step::Stat {
                    which: StatSeries::of(group.field(), name)?,
                    window: match service_level {
                        Some(window) => window,
                        None => self.window(field)?,
                    },
                    provider: optional_literal(field, "provider")?,
                    types: optional_literal(field, "types")?,
                    series: series(field)?,
                }
            }
            (Parent::Workspace, "channel") if arguments_in(&["id"]) => Step::Channel {
                id: literal::<async_graphql::ID>(field, "id")?.0,
                fields: self.selection(selection_set, Parent::Channel)?,
            },
            (Parent::Channel, "id") if leaf => Step::ChannelScalar(ChannelScalar::Id),
            (Parent::Channel, "kind") if leaf => Step::ChannelScalar(ChannelScalar::Kind),
            (Parent::Channel, "name") if leaf => Step::ChannelScalar(ChannelScalar::Name),
            (Parent::Channel, "provider") if leaf => Step::ChannelScalar(ChannelScalar::Provider),
            (Parent::Channel, name)
                if arguments_in(&["window", "mailboxes", "tags", "folders"]) =>
            {
                Step::ChannelSeries {
                    which: ChannelSeries::of(name)?,
                    window: self.window(field)?,
                    filter: ConversationFilter {
                        mailboxes: optional_literal(field, "mailboxes")?,
                        tags: optional_literal(field, "tags")?.unwrap_or_default(),
                        folders: optional_literal(field, "folders")?.unwrap_or_default(),
                    },
                    series: series(field)?,
                }
            }
            (Parent::Workspace, "bots") => Step::Bots(self.selection(selection_set, Parent::Bot)?),
            (Parent::Bot, "id") if leaf => Step::BotScalar(BotScalar::Id),
            (Parent::Bot, "name") if leaf => Step::BotScalar(BotScalar::Name),
            (Parent::Bot, "channels") => {
                Step::BotChannels(self.selection(selection_set, Parent::Channel)?)
            }
            (Parent::Bot, "metric") if arguments_in(&["kind", "window", "channel"]) => {
                Step::BotMetric {
                    kind: literal(field, "kind")?,
                    window: self.window(field)?,
                    channel: optional_literal(field, "channel")?,
                    series: series(field)?,
                }
            }
            _ => return None,
        })
    }

    /// The index of `field`'s `window` argument among the plan's distinct windows.
    fn window(&mut self, field: &FieldSyntax) -> Option<usize> {
        let window = &field.get_argument("window")?.node;
        let index = match self.windows.iter().position(|known| known == window) {
            Some(index) => index,
            None => {
                self.windows.push(window.clone());
                self.windows.len() - 1
            }
        };
        Some(index)
    }
}

/// The argument `name` of `field`, written as a literal (no variable), typed.
fn literal<T: InputType>(field: &FieldSyntax, name: &str) -> Option<T> {
    let value = field.get_argument(name).map(|value| value.node.clone());
    let value = match value {
        Some(value) => Some(value.into_const()?),
        None => None,
    };
    T::parse(value).ok()
}

/// An optional argument: None (the outer Option) when it cannot be compiled.
fn optional_literal<T: InputType>(field: &FieldSyntax, name: &str) -> Option<Option<T>> {
    literal::<Option<T>>(field, name)
}

/// The fields of a `Source` selection by response key: None for `__typename`.
fn source_fields(selection_set: &SelectionSet) -> Option<Vec<(Name, Option<&'static str>)>> {
    const FIELDS: [&str; 6] = [
        "provider",
        "healthy",
        "lastSuccessAt",
        "lastError",
        "nextCallAllowedAt",
        "nextCallWait",
    ];
    time_series::plain_fields(selection_set, |field| {
        let field = &field.node;
        if !field.arguments.is_empty() || !field.selection_set.node.items.is_empty() {
            return None;
        }
        match field.name.node.as_str() {
            "__typename" => Some(None),
            name => Some(Some(*FIELDS.iter().find(|known| **known == name)?)),
        }
    })
}

/// The object a field's selection is resolved on.
enum Object<'a> {
    Query,
    Workspace(&'a Arc<Workspace>),
    Group(&'a Arc<Workspace>),
    Channel(&'a Channel),
    Bot(&'a Bot),
}

/// Where a field is in the response, for its errors.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

impl Path<'_> {
    fn segments(&self) -> Vec<PathSegment> {
        let mut segments = match self.parent {
            Some(parent) => parent.segments(),
            None => Vec::new(),
        };
        segments.push(match self.segment {
            Segment::Key(key) => PathSegment::Field(key.to_string()),
            Segment::Index(index) => PathSegment::Index(index),
        });
        segments
    }
}

/// One request on a plan.
struct Run<'a> {
    registry: &'a Registry,
    caller: &'a Caller,
    fetcher: &'a Fetcher,
    /// The plan's windows, bound.
    windows: Vec<WindowInput>,
    errors: Mutex<Vec<ServerError>>,
}

impl<'a> Run<'a> {
    /// The value of `nodes` on `object`: the fields whose resolver failed are left out, and
    /// an object left empty is null (as async-graphql answers).
    fn object<'b>(
        &'b self,
        nodes: &'b [Node],
        object: &'b Object<'b>,
        path: Option<&'b Path<'b>>,
    ) -> BoxFuture<'b, Value> {
        async move {
            let values = join_all(nodes.iter().map(|node| self.field(node, object, path))).await;
            let mut fields = IndexMap::with_capacity(nodes.len());
            for ((key, _), value) in nodes.iter().zip(values) {
                if let Some(value) = value {
                    fields.insert(key.clone(), value);
                }
            }
            if fields.is_empty() {
                Value::Null
            } else {
                Value::Object(fields)
            }
        }
        .boxed()
    }

    /// The list of `items`, each the object `object` makes of it with `fields`.
    async fn list<'b, T: Sync>(
        &'b self,
        items: &'b [T],
        object: impl Fn(&'b T) -> Object<'b>,
        fields: &'b [Node],
        path: &'b Path<'b>,
    ) -> Value {
        let items = items.iter().enumerate().map(|(index, item)| {
            let object = object(item);
            async move {
                let item = Path {
                    parent: Some(path),
                    segment: Segment::Index(index),
                };
                self.object(fields, &object, Some(&item)).await
            }
        });
        Value::List(join_all(items).await)
    }

    /// The value of one field; None when its resolver failed (its error is recorded).
    async fn field(
        &self,
        (key, field): &Node,
        object: &Object<'_>,
        parent: Option<&Path<'_>>,
    ) -> Option<Value> {
        let path = Path {
            parent,
            segment: Segment::Key(key),
        };
        let here = (field.pos, &path);
        Some(match (&field.step, object) {
            (Step::Typename(name), _) => Value::String((*name).to_string()),
            (Step::Workspace { id, fields }, Object::Query) => {
                let visible = self.registry.get(id).filter(|_| self.caller.may_see(id));
                match visible {
                    Some(workspace) => {
                        self.object(fields, &Object::Workspace(workspace), Some(&path))
                            .await
                    }
                    None => {
                        self.error(ApiError::no_workspace("id", id), here);
                        Value::Null
                    }
                }
            }
            (Step::WorkspaceScalar(scalar), Object::Workspace(workspace)) => match scalar {
                WorkspaceScalar::Id => Value::String(workspace.id.clone()),
                WorkspaceScalar::Name => Value::String(workspace.name.clone()),
                WorkspaceScalar::TimeZone => ScalarType::to_value(&TimeZone(workspace.zone)),
            },
            (Step::Sources(fields), Object::Workspace(workspace)) => {
                let sources = sources_shown(workspace, Some(self.fetcher)).await;
                let object = |source: &crate::graphql::workspace::Source| {
                    let values = fields.iter().map(|(key, name)| {
                        let value = match name {
                            Some(name) => source.field_value(name).unwrap_or_default(),
                            None => Value::String("Source".to_string()),
                        };
                        (key.clone(), value)
                    });
                    Value::Object(values.collect())
                };
                Value::List(sources.iter().map(object).collect())
            }
            (Step::Group(fields), Object::Workspace(workspace) | Object::Group(workspace)) => {
                self.object(fields, &Object::Group(workspace), Some(&path))
                    .await
            }
            (
                Step::Stat {
                    which,
                    window,
                    provider,
                    types,
                    series,
                },
                Object::Group(workspace),
            ) => {
                let spec = series.specs.get(workspace, None, || {
                    which.spec(workspace, *provider, types.as_deref())
                });
                let window = &self.windows[*window];
                let answered =
                    time_series::answer(self.fetcher, workspace, spec, window, series.needs, false)
                        .await;
                self.series(answered, series, here)?
            }
            (Step::Channel { id, fields }, Object::Workspace(workspace)) => {
                let (channel, error) = Channel::find(workspace, self.fetcher, id).await;
                if let Some(error) = error {
                    self.error(error.into(), here);
                }
                match channel {
                    Some(channel) => {
                        self.object(fields, &Object::Channel(&channel), Some(&path))
                            .await
                    }
                    None => Value::Null,
                }
            }
            (Step::ChannelScalar(scalar), Object::Channel(channel)) => match scalar {
                ChannelScalar::Id => Value::String(channel.channel_id()),
                ChannelScalar::Kind => enum_value(channel.feed().kind()),
                ChannelScalar::Name => Value::String(channel.feed().name()),
                ChannelScalar::Provider => enum_value(channel.feed().provider()),
            },
            (
                Step::ChannelSeries {
                    which,
                    window,
                    filter,
                    series,
                },
                Object::Channel(channel),
            ) => {
                let window = &self.windows[*window];
                let spec = series
                    .specs
                    .get(channel.workspace(), None, || channel.spec(*which, filter));
                let answered = channel
                    .answer(self.fetcher, spec, window, series.needs)
                    .await;
                self.series(answered, series, here)?
            }
            (Step::Bots(fields), Object::Workspace(workspace)) => {
                let bots = match bot::bots(workspace, self.fetcher).await {
                    Ok(bots) => bots,
                    Err(error) => {
                        self.server_error(error.into_server_error(field.pos), &path);
                        return None;
                    }
                };
                self.list(&bots, Object::Bot, fields, &path).await
            }
            (Step::BotChannels(fields), Object::Bot(bot)) => {
                let channels = bot.channel_list(self.fetcher).await;
                self.list(&channels, Object::Channel, fields, &path).await
            }
            (Step::BotScalar(scalar), Object::Bot(bot)) => match scalar {
                BotScalar::Id => Value::String(format!("xenioo:{}", bot.bot_name())),
                BotScalar::Name => Value::String(bot.bot_name().to_string()),
            },
            (
                Step::BotMetric {
                    kind,
                    window,
                    channel,
                    series,
                },
                Object::Bot(bot),
            ) => {
                let spec = series.specs.get(bot.workspace(), Some(bot.bot_name()), || {
                    bot.metric_spec(*kind, channel.clone())
                });
                let window = &self.windows[*window];
                let answered = time_series::answer(
                    self.fetcher,
                    bot.workspace(),
                    spec,
                    window,
                    series.needs,
                    false,
                )
                .await;
                self.series(answered, series, here)?
            }
            _ => unreachable!("a plan selects each step on the object it was compiled for"),
        })
    }

    /// The value of an answered series field (None: its resolver failed), its errors
    /// recorded at `here`.
    fn series(
        &self,
        answered: Answered,
        selection: &SeriesSelection,
        here: (Pos, &Path<'_>),
    ) -> Option<Value> {
        for error in answered.errors {
            self.error(error, here);
        }
        let series = match answered.series {
            Ok(Some(series)) => series,
            Ok(None) => return Some(Value::Null),
            Err(error) => {
                self.error(error, here);
                return None;
            }
        };
        let change_failed = selection
            .fields
            .iter()
            .any(|(_, kind)| matches!(kind, SeriesField::Change));
        let previous_error = change_failed.then(|| series.previous_error()).flatten();
        let Some(previous_error) = previous_error else {
            return Some(series.plain_value(&selection.fields, true));
        };
        // `change` fails with the previous window: left out, its error at its own path.
        let mut fields = selection.fields.clone();
        fields.retain(|(key, kind)| {
            let change = matches!(kind, SeriesField::Change);
            if change {
                let path = Path {
                    parent: Some(here.1),
                    segment: Segment::Key(key),
                };
                self.error(previous_error.clone(), (here.0, &path));
            }
            !change
        });
        Some(series.plain_value(&fields, true))
    }

    /// Record `error` for the field at `here`.
    fn error(&self, error: ApiError, (pos, path): (Pos, &Path<'_>)) {
        let error = async_graphql::Error::from(error).into_server_error(pos);
        self.server_error(error, path);
    }

    fn server_error(&self, mut error: ServerError, path: &Path<'_>) {
        error.path = path.segments();
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiles(query: &str) -> bool {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        Plan::compile(&document, None).is_some()
    }

    #[test]
    fn dashboard_shapes_compile_and_anything_else_does_not() {
        assert!(compiles(
            r#"query Q($from: DateTime!) { workspace(id: "acme") { name users {
                new(window: { from: $from, to: "2025-03-17T00:00:00Z" }) { total points { at value } }
            } } }"#
        ));
        // A fragment, a directive, a variable outside `window`, a field not compiled.
        assert!(!compiles(
            r#"{ workspace(id: "acme") { ...F } } fragment F on Workspace { name }"#
        ));
        assert!(!compiles(
            r#"{ workspace(id: "acme") { name @include(if: true) } }"#
        ));
        assert!(!compiles(
            r#"query Q($id: ID!) { workspace(id: $id) { name } }"#
        ));
        assert!(!compiles(r#"{ workspaces { name } }"#));
        assert!(!compiles(r#"mutation { requestNpsExport }"#));
    }

    #[test]
    fn equal_windows_are_bound_once() {
        let document = async_graphql::parser::parse_query(
            r#"query Q($from: DateTime!, $to: DateTime!) { workspace(id: "acme") {
                users { new(window: { from: $from, to: $to }) { total } }
                messages { sent(window: { from: $from, to: $to }) { total } }
                dialogs { serviceLevel(window: { from: $from, to: "2025-03-17T00:00:00Z" }) {
                    attention { total } } }
            } }"#,
        )
        .expect("parses");
        let plan = Plan::compile(&document, None).expect("compiles");
        assert_eq!(plan.windows.len(), 2);
        let variables = Variables::from_json(serde_json::json!({
            "from": "2025-03-10T00:00:00Z", "to": "2025-03-17T00:00:00Z"
        }));
        assert!(plan.bind(&plan.windows[0], &variables).is_some());
        let missing = Variables::from_json(serde_json::json!({ "from": "2025-03-10T00:00:00Z" }));
        assert!(plan.bind(&plan.windows[0], &missing).is_none());
        let wrong = Variables::from_json(serde_json::json!({ "from": 3, "to": "x" }));
        assert!(plan.bind(&plan.windows[0], &wrong).is_none());
    }
}

//! Templates: several objects (services, links, routes, jobs) written
//! once with parameters, rendered into plain objects and created together.
//! A parameter is given, defaulted, or generated from an expression such
//! as `[a-zA-Z0-9]{16}`; `${NAME}` inside a string substitutes its text,
//! and a string that is exactly `${{NAME}}` becomes its value read as JSON,
//! so replicas and ports can be parameters; `$${X}` stays `${X}` (for a
//! shell). Rendering is pure: the caller
//! supplies the randomness.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::name::validate_env_name;
use crate::{validate_dns_label, Labels, ValidationErrors};

/// A template as its file spells it (`kind: Template`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    /// Its name.
    pub name: String,
    /// What it makes, for `berth process --parameters`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The values it asks for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// Labels added to every object (after substitution).
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// The objects, each a document with `kind:` as `berth apply` reads.
    pub objects: Vec<Value>,
    /// A job run once the objects exist (a `Job` document without `kind:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Value>,
    /// The template's services an existing service may be linked to
    /// (`berth new-app --link-to web`), each on its port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub linkable: Vec<Linkable>,
}

/// A secret variable of a service whose value was generated once, when
/// the service was made (`berth run --generate-env NAME=EXPRESSION`), from
/// the same expressions as a template's generated parameters. Its pods
/// get it as a secret variable; the service's own `env` of the same name
/// overrides it, and removing that override brings it back.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratedVar {
    /// `[A-Za-z_][A-Za-z0-9_]*`.
    pub name: String,
    /// The expression it was generated from: `[a-zA-Z0-9]{16}`.
    pub from: String,
    /// The value, made by the client that created the service; shown
    /// blank by the API, and a blank one sent back keeps the stored one.
    #[serde(default)]
    pub value: String,
}

impl std::fmt::Debug for GeneratedVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedVar")
            .field("name", &self.name)
            .field("from", &self.from)
            .field(
                "value",
                &if self.value.is_empty() {
                    ""
                } else {
                    "<secret>"
                },
            )
            .finish()
    }
}

impl GeneratedVar {
    /// `name` with a value generated from `from` with `random`; a bad
    /// name or expression is an error naming the variable.
    pub fn generate(
        name: &str,
        from: &str,
        random: &mut dyn FnMut(usize) -> usize,
    ) -> Result<Self, TemplateError> {
        validate_env_name(name).map_err(|why| TemplateError::BadParameter {
            name: name.to_owned(),
            why: format!("name {why}"),
        })?;
        let expression = Expression::parse(from).map_err(|why| TemplateError::BadExpression {
            name: name.to_owned(),
            from: from.to_owned(),
            why,
        })?;
        Ok(Self {
            name: name.to_owned(),
            from: from.to_owned(),
            value: generate(&expression, random),
        })
    }

    /// The variable's own rules, each problem under `field` (a list
    /// element's path): a variable name and a parseable expression.
    pub fn check(&self, field: &str, errors: &mut ValidationErrors) {
        if let Err(why) = validate_env_name(&self.name) {
            errors.push(format!("{field}.name"), why);
        }
        if let Err(why) = Expression::parse(&self.from) {
            errors.push(format!("{field}.from"), format!("bad expression: {why}"));
        }
    }
}

/// A service of the template that others may link to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Linkable {
    /// The service's name, as the template spells it (`${NAME}-db`).
    pub service: String,
    /// The container port a link reaches.
    pub port: u16,
}

/// One value a template asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Parameter {
    /// `[A-Za-z_][A-Za-z0-9_]*`, as `${NAME}` refers to it.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// It must be given (or have a default, or be generated).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// `expression`: generated from `from` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<Generate>,
    /// The expression generated values follow: `[a-zA-Z0-9]{16}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// How a parameter's value is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Generate {
    /// From the `from` expression.
    Expression,
}

/// Why a template cannot be rendered; each names its parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A required parameter was not given.
    #[error("parameter {0} is required")]
    Missing(String),
    /// A value was given for a parameter the template does not have.
    #[error("unknown parameter {name}: the template's are {known}")]
    Unknown {
        /// The name given.
        name: String,
        /// The template's parameters.
        known: String,
    },
    /// A parameter's expression cannot be generated from.
    #[error("parameter {name}: bad expression {from:?}: {why}")]
    BadExpression {
        /// The parameter.
        name: String,
        /// Its expression.
        from: String,
        /// What is wrong with it.
        why: String,
    },
    /// A parameter is declared wrongly.
    #[error("parameter {name}: {why}")]
    BadParameter {
        /// The parameter.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// A `linkable` entry names no service of the template.
    #[error("linkable[{index}].service: {service} is not a service of the template")]
    NotLinkable {
        /// Its place in `linkable`.
        index: usize,
        /// The name, rendered.
        service: String,
    },
    /// `${NAME}` names no parameter.
    #[error("objects[{index}]: ${{{name}}} names no parameter")]
    Undeclared {
        /// The object it is in.
        index: usize,
        /// The name referred to.
        name: String,
    },
    /// `${{NAME}}`'s value is not JSON.
    #[error("parameter {name}: ${{{{{name}}}}} needs a JSON value, not {value:?}")]
    NotJson {
        /// The parameter.
        name: String,
        /// Its value.
        value: String,
    },
}

/// The parameters' values, and which of them were generated (secrets to
/// show once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    /// Every parameter's value, by name.
    pub values: BTreeMap<String, String>,
    /// The names of those generated now.
    pub generated: Vec<String>,
}

impl Template {
    /// The rules a stored template must pass, each problem naming its
    /// field: a DNS-label name, parameters declared well (once each), and
    /// objects that say their `kind`. The objects themselves are checked
    /// once rendered, as `berth apply` checks documents.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_dns_label(&self.name) {
            errors.push("name", e.to_string());
        }
        for (i, parameter) in self.parameters.iter().enumerate() {
            if let Err(e) = parameter.check() {
                errors.push(format!("parameters[{i}]"), e.to_string());
            }
            if self.parameters[..i]
                .iter()
                .any(|p| p.name == parameter.name)
            {
                errors.push(
                    format!("parameters[{i}].name"),
                    format!("{} is declared twice", parameter.name),
                );
            }
        }
        if self.objects.is_empty() {
            errors.push("objects", "must hold at least one object");
        }
        for (i, object) in self.objects.iter().enumerate() {
            if object
                .get("kind")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errors.push(
                    format!("objects[{i}].kind"),
                    "missing: each object says its kind",
                );
            }
        }
        if self
            .script
            .as_ref()
            .is_some_and(|script| !script.is_object())
        {
            errors.push("script", "must be a Job document (a mapping)");
        }
        for (i, linkable) in self.linkable.iter().enumerate() {
            if linkable.service.is_empty() {
                errors.push(format!("linkable[{i}].service"), "must not be empty");
            }
            if linkable.port == 0 {
                errors.push(format!("linkable[{i}].port"), "must be 1 to 65535");
            }
        }
        errors.into_result()
    }

    /// The template as the cluster knows it: its name qualified by
    /// `project` (its objects are named when they are made).
    pub fn qualified(mut self, project: &str) -> Self {
        self.name = crate::project::qualify(project, &self.name);
        self
    }

    /// The template as its project's users see it.
    pub fn unqualified(mut self) -> Self {
        self.name = crate::project::unqualified(&self.name).to_owned();
        self
    }

    /// Every parameter's value: given, else its default, else generated
    /// from its expression with `random` (a uniform draw below its
    /// argument). A given value for no parameter, a required one missing,
    /// or a bad expression is an error naming it.
    pub fn values(
        &self,
        given: &BTreeMap<String, String>,
        random: &mut dyn FnMut(usize) -> usize,
    ) -> Result<Values, TemplateError> {
        for name in given.keys() {
            if !self.parameters.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = self.parameters.iter().map(|p| p.name.as_str()).collect();
                return Err(TemplateError::Unknown {
                    name: name.clone(),
                    known: known.join(", "),
                });
            }
        }
        let mut values = Values::default();
        for parameter in &self.parameters {
            parameter.check()?;
            let value = if let Some(value) = given.get(&parameter.name) {
                value.clone()
            } else if let Some(value) = &parameter.value {
                value.clone()
            } else if let Some(from) = &parameter.from {
                values.generated.push(parameter.name.clone());
                generate(
                    &Expression::parse(from).map_err(|why| parameter.bad(from, why))?,
                    random,
                )
            } else if parameter.required {
                return Err(TemplateError::Missing(parameter.name.clone()));
            } else {
                String::new()
            };
            values.values.insert(parameter.name.clone(), value);
        }
        Ok(values)
    }

    /// The objects with every `${NAME}` and `${{NAME}}` substituted and the
    /// template's labels added, then the script, if any.
    pub fn render(&self, values: &Values) -> Result<Rendered, TemplateError> {
        let mut labels = Value::Object(
            self.labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        );
        substitute(&mut labels, &values.values, 0)?;
        let mut objects = Vec::new();
        for (index, object) in self.objects.iter().enumerate() {
            let mut object = object.clone();
            substitute(&mut object, &values.values, index)?;
            add_labels(&mut object, &labels);
            objects.push(object);
        }
        let script = match &self.script {
            Some(script) => {
                let mut script = script.clone();
                substitute(&mut script, &values.values, self.objects.len())?;
                add_labels(&mut script, &labels);
                Some(script)
            }
            None => None,
        };
        let mut linkable = Vec::new();
        for (index, entry) in self.linkable.iter().enumerate() {
            let service = substitute_text(&entry.service, &values.values, self.objects.len())?;
            let is_service = objects.iter().any(|o| {
                o.get("kind").and_then(Value::as_str) == Some("Service")
                    && o.get("name").and_then(Value::as_str) == Some(service.as_str())
            });
            if !is_service {
                return Err(TemplateError::NotLinkable { index, service });
            }
            linkable.push(Linkable {
                service,
                port: entry.port,
            });
        }
        Ok(Rendered {
            objects,
            script,
            linkable,
        })
    }
}

/// A template's objects, ready to be read as documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The objects, each with `kind:`.
    pub objects: Vec<Value>,
    /// The script job.
    pub script: Option<Value>,
    /// The services `--link-to` links to, named as rendered.
    pub linkable: Vec<Linkable>,
}

impl Parameter {
    /// The declaration's own rules: a variable-like name, and `generate`
    /// together with a parseable `from`.
    fn check(&self) -> Result<(), TemplateError> {
        validate_env_name(&self.name).map_err(|why| TemplateError::BadParameter {
            name: self.name.clone(),
            why: format!("name {why}"),
        })?;
        match (&self.generate, &self.from) {
            (Some(Generate::Expression), Some(from)) => {
                Expression::parse(from).map_err(|why| self.bad(from, why))?;
                Ok(())
            }
            (Some(Generate::Expression), None) => Err(TemplateError::BadParameter {
                name: self.name.clone(),
                why: "generate: expression needs from: (e.g. \"[a-zA-Z0-9]{16}\")".into(),
            }),
            (None, Some(_)) => Err(TemplateError::BadParameter {
                name: self.name.clone(),
                why: "from: needs generate: expression".into(),
            }),
            (None, None) => Ok(()),
        }
    }

    fn bad(&self, from: &str, why: String) -> TemplateError {
        TemplateError::BadExpression {
            name: self.name.clone(),
            from: from.to_owned(),
            why,
        }
    }
}

/// A generator expression: a sequence of character sets, each repeated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression(Vec<(Vec<char>, usize)>);

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";
const SYMBOLS: &str = "~!@#$%^&*()-_+={}[]|<,>.?/\"';:`";

/// The characters of a class: `\w` word characters (letters, digits,
/// `_`), `\d` digits, `\a` letters, `\A` symbols, as OpenShift's.
fn class(letter: char) -> Option<String> {
    Some(match letter {
        'w' => format!("{LOWER}{UPPER}{DIGITS}_"),
        'd' => DIGITS.to_owned(),
        'a' => format!("{LOWER}{UPPER}"),
        'A' => SYMBOLS.to_owned(),
        _ => return None,
    })
}

impl Expression {
    /// Reads `[a-z0-9]{8}`, `\d{4}`, `x[\w]{3}`: literal characters,
    /// classes, and bracketed sets of characters, ranges and classes, each
    /// optionally followed by `{n}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut chars = text.chars().peekable();
        let mut parts = Vec::new();
        while let Some(c) = chars.next() {
            let set: Vec<char> = match c {
                '\\' => {
                    let letter = chars.next().ok_or("ends with \\")?;
                    class(letter)
                        .ok_or(format!(
                            "unknown class \\{letter}: use \\w, \\d, \\a or \\A"
                        ))?
                        .chars()
                        .collect()
                }
                '[' => {
                    let mut set = Vec::new();
                    loop {
                        match chars.next().ok_or("[ without ]")? {
                            ']' => break,
                            '\\' => {
                                let letter = chars.next().ok_or("ends with \\")?;
                                set.extend(
                                    class(letter)
                                        .ok_or(format!(
                                            "unknown class \\{letter}: use \\w, \\d, \\a or \\A"
                                        ))?
                                        .chars(),
                                );
                            }
                            low => {
                                if chars.peek() == Some(&'-') {
                                    chars.next();
                                    let high = chars.next().ok_or("range without its end")?;
                                    if high == ']' || high < low {
                                        return Err(format!("bad range {low}-{high}"));
                                    }
                                    set.extend(low..=high);
                                } else {
                                    set.push(low);
                                }
                            }
                        }
                    }
                    set.sort_unstable();
                    set.dedup();
                    if set.is_empty() {
                        return Err("[] holds no character".into());
                    }
                    set
                }
                '{' | '}' | ']' => return Err(format!("unexpected {c}")),
                literal => vec![literal],
            };
            let mut count = 1;
            if chars.peek() == Some(&'{') {
                chars.next();
                let mut digits = String::new();
                loop {
                    match chars.next().ok_or("{ without }")? {
                        '}' => break,
                        d => digits.push(d),
                    }
                }
                count = digits
                    .parse()
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or(format!("{{{digits}}} must be a count from 1 to 1024"))?;
            }
            parts.push((set, count));
        }
        if parts.is_empty() {
            return Err("is empty".into());
        }
        Ok(Self(parts))
    }
}

/// A value of `expression`, each character drawn with `random`.
pub fn generate(expression: &Expression, random: &mut dyn FnMut(usize) -> usize) -> String {
    let mut value = String::new();
    for (set, count) in &expression.0 {
        for _ in 0..*count {
            value.push(set[random(set.len()) % set.len()]);
        }
    }
    value
}

/// Replaces `${NAME}` in every string of `value` (keys too), and a string
/// that is exactly `${{NAME}}` by the JSON its value reads as.
fn substitute(
    value: &mut Value,
    values: &BTreeMap<String, String>,
    index: usize,
) -> Result<(), TemplateError> {
    match value {
        Value::String(text) => {
            if let Some(name) = text
                .strip_prefix("${{")
                .and_then(|rest| rest.strip_suffix("}}"))
            {
                let found = values.get(name).ok_or_else(|| TemplateError::Undeclared {
                    index,
                    name: name.to_owned(),
                })?;
                *value = serde_json::from_str(found).map_err(|_| TemplateError::NotJson {
                    name: name.to_owned(),
                    value: found.clone(),
                })?;
            } else {
                *text = substitute_text(text, values, index)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                substitute(item, values, index)?;
            }
        }
        Value::Object(fields) => {
            let mut renamed = serde_json::Map::new();
            for (key, mut field) in std::mem::take(fields) {
                substitute(&mut field, values, index)?;
                renamed.insert(substitute_text(&key, values, index)?, field);
            }
            *fields = renamed;
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

fn substitute_text(
    text: &str,
    values: &BTreeMap<String, String>,
    index: usize,
) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        // `$${X}` is a literal `${X}`, for the shell of a command.
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let found = values.get(name).ok_or_else(|| TemplateError::Undeclared {
            index,
            name: name.to_owned(),
        })?;
        out.push_str(found);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Adds the template's labels to an object's own (a link has none).
fn add_labels(object: &mut Value, labels: &Value) {
    let Value::Object(fields) = object else {
        return;
    };
    let Value::Object(labels) = labels else {
        return;
    };
    if labels.is_empty() || fields.get("kind").and_then(Value::as_str) == Some("Link") {
        return;
    }
    let own = fields
        .entry("labels")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Value::Object(own) = own {
        for (k, v) in labels {
            own.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// An object as a template document spells it: `kind:` first, then its
/// own fields.
pub fn with_kind<T: Serialize>(kind: &str, object: &T) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert("kind".into(), Value::String(kind.into()));
    if let Ok(Value::Object(own)) = serde_json::to_value(object) {
        fields.extend(own);
    }
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template() -> Template {
        serde_json::from_value(json!({
            "name": "web-db",
            "parameters": [
                {"name": "NAME", "required": true},
                {"name": "REPLICAS", "value": "2"},
                {"name": "PASSWORD", "generate": "expression", "from": "[a-zA-Z0-9]{16}"},
            ],
            "labels": {"app": "${NAME}"},
            "objects": [
                {"kind": "Service", "name": "${NAME}-db", "replicas": "${{REPLICAS}}",
                 "publish": [{"name": "PASSWORD", "value": "${PASSWORD}"}]},
                {"kind": "Link", "service": "${NAME}-web", "target": "${NAME}-db", "port": 5432},
            ],
        }))
        .expect("template")
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn counting() -> impl FnMut(usize) -> usize {
        let mut n = 0;
        move |below| {
            n += 1;
            n % below
        }
    }

    #[test]
    fn names_strings_and_json_values_are_substituted() {
        let template = template();
        let values = template
            .values(&given(&[("NAME", "shop")]), &mut counting())
            .expect("values");
        assert_eq!(values.generated, ["PASSWORD"]);
        let password = values.values["PASSWORD"].clone();
        assert_eq!(password.len(), 16);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        let rendered = template.render(&values).expect("rendered");
        assert_eq!(
            rendered.objects[0],
            json!({"kind": "Service", "name": "shop-db", "replicas": 2,
                   "labels": {"app": "shop"},
                   "publish": [{"name": "PASSWORD", "value": password}]})
        );
        assert_eq!(rendered.objects[1]["service"], "shop-web");
        assert!(
            rendered.objects[1].get("labels").is_none(),
            "links carry none"
        );
        let mut shell = template.clone();
        shell.objects = vec![json!({"args": ["echo $${HOME} ${NAME}"]})];
        let rendered = shell.render(&values).expect("rendered");
        assert_eq!(rendered.objects[0]["args"][0], "echo ${HOME} shop");
    }

    #[test]
    fn missing_unknown_and_bad_parameters_are_named() {
        let template = template();
        assert_eq!(
            template.values(&given(&[]), &mut counting()),
            Err(TemplateError::Missing("NAME".into()))
        );
        let unknown = template
            .values(&given(&[("NAME", "a"), ("SIZE", "1")]), &mut counting())
            .expect_err("unknown");
        assert_eq!(
            unknown.to_string(),
            "unknown parameter SIZE: the template's are NAME, REPLICAS, PASSWORD"
        );
        let mut bad = template.clone();
        bad.parameters[2].from = Some("[a-".into());
        let found = bad
            .values(&given(&[("NAME", "a")]), &mut counting())
            .expect_err("bad");
        assert!(
            found
                .to_string()
                .starts_with("parameter PASSWORD: bad expression \"[a-\""),
            "{found}"
        );
        let not_json = template
            .values(
                &given(&[("NAME", "a"), ("REPLICAS", "two")]),
                &mut counting(),
            )
            .and_then(|v| template.render(&v))
            .expect_err("not json");
        assert!(
            not_json.to_string().starts_with("parameter REPLICAS"),
            "{not_json}"
        );
    }

    #[test]
    fn expressions_cover_classes_ranges_and_counts() {
        let all = |text: &str| -> Vec<String> {
            Expression::parse(text)
                .expect(text)
                .0
                .into_iter()
                .map(|(set, n)| format!("{}x{n}", set.len()))
                .collect()
        };
        assert_eq!(all("[a-zA-Z0-9]{16}"), ["62x16"]);
        assert_eq!(all(r"\w{4}"), ["63x4"]);
        assert_eq!(all(r"[\d]{6}"), ["10x6"]);
        assert_eq!(all(r"[\a]{2}\A"), ["52x2", "31x1"]);
        assert_eq!(all("pw-[0-9]"), ["1x1", "1x1", "1x1", "10x1"]);
        for bad in ["", "[a-", "[z-a]", r"\q", "[a]{0}", "[a]{x}", "{3}"] {
            assert!(Expression::parse(bad).is_err(), "{bad:?} parsed");
        }
        let expression = Expression::parse(r"[\d]{6}").expect("digits");
        let value = generate(&expression, &mut counting());
        assert_eq!(value, "123456");
    }

    #[test]
    fn a_stored_template_names_its_bad_fields() {
        let mut template = template();
        assert_eq!(template.validate(), Ok(()));
        template.name = "Web_DB".into();
        template.parameters.push(template.parameters[0].clone());
        template.objects.push(json!({"name": "no-kind"}));
        template.script = Some(json!([null]));
        let fields: Vec<String> = template
            .validate()
            .expect_err("invalid")
            .errors()
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(
            fields,
            ["name", "parameters[3].name", "objects[2].kind", "script"]
        );
    }

    #[test]
    fn linkable_services_are_rendered_and_must_be_the_templates() {
        let mut template = template();
        template.linkable = vec![Linkable {
            service: "${NAME}-db".into(),
            port: 5432,
        }];
        assert_eq!(template.validate(), Ok(()));
        let values = template
            .values(&given(&[("NAME", "shop")]), &mut counting())
            .expect("values");
        let rendered = template.render(&values).expect("rendered");
        assert_eq!(
            rendered.linkable,
            [Linkable {
                service: "shop-db".into(),
                port: 5432
            }]
        );
        template.linkable[0].service = "${NAME}-web".into();
        assert_eq!(
            template
                .render(&values)
                .expect_err("no such service")
                .to_string(),
            "linkable[0].service: shop-web is not a service of the template"
        );
        template.linkable[0].port = 0;
        let fields: Vec<String> = template
            .validate()
            .expect_err("port 0")
            .errors()
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(fields, ["linkable[0].port"]);
    }

    #[test]
    fn a_reference_to_no_parameter_is_an_error() {
        let mut template = template();
        template
            .objects
            .push(json!({"kind": "Route", "name": "${NAM}"}));
        let values = template
            .values(&given(&[("NAME", "a")]), &mut counting())
            .expect("values");
        assert_eq!(
            template
                .render(&values)
                .expect_err("undeclared")
                .to_string(),
            "objects[2]: ${NAM} names no parameter"
        );
    }
}

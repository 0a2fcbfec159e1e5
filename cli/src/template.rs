//! `berth process` and `berth new-app`: a template file's parameters
//! resolved (given, defaulted or generated from the OS's random source),
//! its objects rendered and checked as `berth apply` checks documents, and
//! for `new-app` created on the master in one commit, all or nothing.
//! Generated values are printed once; afterwards they live only where
//! the template puts them, as secrets (a service's `publish` or a
//! container's `secretEnv`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use berth_model::template::{Template, Values};
use berth_model::Job;
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::apply::document::{self, Document, Object, Problem, Source};
use crate::apply::InvalidDocuments;
use crate::master_client::MasterClient;
use crate::output::{self, Format};
use crate::parse;

/// What `berth process` and `berth new-app` share: the template and its
/// parameters.
#[derive(Debug, Args)]
pub struct TemplateInput {
    /// A template file (YAML or JSON, `kind: Template`), or the name of a
    /// template stored in the project (`berth template create`).
    #[arg(value_name = "TEMPLATE_FILE|NAME")]
    pub template: PathBuf,
    /// A parameter's value, NAME=VALUE (repeatable); wins over --param-file.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", value_parser = parse::label)]
    pub params: Vec<(String, String)>,
    /// A file of NAME=VALUE lines (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub param_file: Option<PathBuf>,
}

/// `berth process`.
#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// The template and its parameters.
    #[command(flatten)]
    pub input: TemplateInput,
    /// List the template's parameters instead of rendering it.
    #[arg(long)]
    pub parameters: bool,
    /// Output format of the rendered objects.
    #[arg(short, long, value_enum, default_value_t = RenderFormat::Yaml)]
    pub output: RenderFormat,
}

/// How `berth process` prints the objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    /// Documents separated by `---`, as `berth apply -f` reads them.
    Yaml,
    /// A JSON array of the objects.
    Json,
}

/// `berth new-app`.
#[derive(Debug, Args)]
pub struct NewAppArgs {
    /// The template and its parameters.
    #[command(flatten)]
    pub input: TemplateInput,
    /// Wait for the template's script job to end; exit 1 naming it if it
    /// did not succeed (the objects stay).
    #[arg(long)]
    pub wait: bool,
}

/// A template's objects, checked, and its script job.
struct Rendered {
    documents: Vec<Document>,
    script: Option<Job>,
    values: Values,
}

/// `berth process`: the rendered objects, or with `--parameters` the
/// parameters; nothing is sent.
pub async fn process(args: &ProcessArgs) -> anyhow::Result<()> {
    let (file, template) = if args.input.template.is_file() {
        read_template(&args.input.template)?
    } else {
        stored(&crate::cluster::client()?, &args.input.template).await?
    };
    if args.parameters {
        return output::print(&parameters_table(&template));
    }
    let rendered = render(&file, &template, &args.input)?;
    let mut objects: Vec<Value> = rendered
        .documents
        .iter()
        .map(|d| as_sent(&d.object))
        .collect();
    if let Some(script) = &rendered.script {
        objects.push(with_kind("Job", script));
    }
    let text = match args.output {
        RenderFormat::Json => output::json(&objects)?,
        RenderFormat::Yaml => {
            let documents: Vec<String> = objects
                .iter()
                .map(output::yaml)
                .collect::<Result<_, _>>()
                .context("cannot encode the objects as YAML")?;
            documents.join("---\n")
        }
    };
    output::print(&text)
}

/// `berth new-app`: every object created in one commit, the generated
/// values shown once, then the script job run (and with `--wait` waited
/// for).
pub async fn new_app(client: &MasterClient, args: &NewAppArgs) -> anyhow::Result<()> {
    let (file, template) = if args.input.template.is_file() {
        read_template(&args.input.template)?
    } else {
        stored(client, &args.input.template).await?
    };
    let rendered = render(&file, &template, &args.input)?;
    let objects: Vec<Value> = rendered
        .documents
        .iter()
        .map(|d| as_sent(&d.object))
        .collect();
    let created = client
        .create_batch(&objects)
        .await
        .with_context(|| format!("nothing created from {file}"))?;
    let mut text: String = created
        .created
        .iter()
        .map(|object| format!("{object} created\n"))
        .collect();
    if !rendered.values.generated.is_empty() {
        text.push_str("generated (shown only now; kept as secrets):\n");
        for name in &rendered.values.generated {
            text.push_str(&format!("  {name}={}\n", rendered.values.values[name]));
        }
    }
    output::print(&text)?;
    let Some(script) = rendered.script else {
        return Ok(());
    };
    let name = script.name.clone();
    client
        .create_job(&script)
        .await
        .with_context(|| format!("the objects exist, but the script job {name} was not created"))?;
    output::print(&format!("job/{name} created (the template's script)\n"))?;
    if args.wait {
        crate::job::wait(client, &name, None)
            .await
            .with_context(|| format!("the template's script job {name} did not succeed"))?;
    }
    Ok(())
}

/// The stored template named `name` (the argument was no file).
async fn stored(client: &MasterClient, name: &Path) -> anyhow::Result<(String, Template)> {
    let name = name.display().to_string();
    let template = client
        .get_template(&name)
        .await
        .with_context(|| format!("{name} is neither a file nor a stored template"))?;
    Ok((format!("template {name}"), template.object))
}

/// `berth template`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    berth template create -f examples/templates/web-db.yaml\n  \
    berth new-app web-db -p NAME=shop\n  \
    berth template describe web-db\n  \
    berth template rm web-db")]
pub struct TemplateArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TemplateCommand,
}

/// The `berth template` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// Store a template file in the project, for `berth new-app NAME`.
    Create {
        /// The template file.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
    },
    /// List the project's templates.
    Ls {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show a template: its description and parameters, or all of it.
    Describe {
        /// The template.
        name: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove a template (what was made from it stays).
    Rm {
        /// The template.
        name: String,
    },
}

/// Runs one `berth template` command.
pub async fn run(client: &MasterClient, command: TemplateCommand) -> anyhow::Result<()> {
    match command {
        TemplateCommand::Create { file } => {
            let (shown, template) = read_template(&file)?;
            if let Err(errors) = template.validate() {
                let lines: Vec<String> = errors
                    .errors()
                    .iter()
                    .map(|e| format!("{shown}: {}: {}", e.field, e.message))
                    .collect();
                anyhow::bail!("template not stored:\n  {}", lines.join("\n  "));
            }
            let stored = client.create_template(&template).await?;
            output::print(&format!("template/{} stored\n", stored.object.name))
        }
        TemplateCommand::Ls { output } => {
            let templates = client.list_templates().await?;
            if let Some(text) = output::structured(output, &templates)? {
                return output::print(&text);
            }
            let rows: Vec<Vec<String>> = templates
                .iter()
                .map(|t| {
                    vec![
                        t.object.name.clone(),
                        t.object.parameters.len().to_string(),
                        t.object.objects.len().to_string(),
                        t.object.description.clone(),
                    ]
                })
                .collect();
            output::print(&output::table(
                &["NAME", "PARAMETERS", "OBJECTS", "DESCRIPTION"],
                &rows,
            ))
        }
        TemplateCommand::Describe { name, output } => {
            let template = client.get_template(&name).await?;
            if let Some(text) = output::structured(output, &template)? {
                return output::print(&text);
            }
            let t = &template.object;
            let kinds: Vec<&str> = t
                .objects
                .iter()
                .filter_map(|o| o.get("kind").and_then(Value::as_str))
                .collect();
            output::print(&format!(
                "Name:         {}\nDescription:  {}\nObjects:      {}\nScript:       {}\n\n{}",
                t.name,
                t.description,
                kinds.join(", "),
                if t.script.is_some() { "yes" } else { "none" },
                parameters_table(t)
            ))
        }
        TemplateCommand::Rm { name } => {
            client.delete_template(&name).await?;
            output::print(&format!("template/{name} removed\n"))
        }
    }
}

/// The template of `path`: its file name for messages, and the template.
fn read_template(path: &Path) -> anyhow::Result<(String, Template)> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {file}"))?;
    let mut value: Value =
        serde_norway::from_str(&text).with_context(|| format!("{file}: not YAML or JSON"))?;
    if let Value::Object(fields) = &mut value {
        match fields.remove("kind") {
            None => {}
            Some(Value::String(kind)) if kind == "Template" => {}
            Some(other) => anyhow::bail!("{file}: kind: must be Template, not {other}"),
        }
    }
    let template = serde_path_to_error::deserialize(value)
        .map_err(|e| anyhow::anyhow!("{file}: {}: {}", e.path(), e.inner()))?;
    Ok((file, template))
}

/// The parameters given: the file's lines, then `-p`.
fn given(input: &TemplateInput) -> anyhow::Result<BTreeMap<String, String>> {
    let mut given = BTreeMap::new();
    if let Some(path) = &input.param_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = parse::label(line)
                .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", path.display(), i + 1))?;
            given.insert(name, value);
        }
    }
    given.extend(input.params.iter().cloned());
    Ok(given)
}

/// Resolves the parameters and renders the objects, each checked by the
/// model's rules as `berth apply` checks a document, naming the file,
/// object and field of every problem.
fn render(file: &str, template: &Template, input: &TemplateInput) -> anyhow::Result<Rendered> {
    let given = given(input)?;
    let mut random = OsRandom::open()?;
    let values = template
        .values(&given, &mut |below| random.below(below))
        .with_context(|| file.to_owned())?;
    random.check()?;
    let rendered = template.render(&values).with_context(|| file.to_owned())?;
    let mut documents = Vec::new();
    let mut problems: Vec<Problem> = Vec::new();
    for (index, object) in rendered.objects.into_iter().enumerate() {
        let source = Source {
            file: file.to_owned(),
            index,
            in_template: true,
        };
        let value = serde_norway::to_value(&object).context("re-encoding an object")?;
        match document::read(source, value) {
            Ok(document) => documents.push(document),
            Err(found) => problems.extend(found),
        }
    }
    problems.extend(document::check_together(&documents));
    let script = match rendered.script {
        None => None,
        Some(script) => match read_script(file, script) {
            Ok(job) => Some(job),
            Err(problem) => {
                problems.push(problem);
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(InvalidDocuments(problems).into());
    }
    Ok(Rendered {
        documents,
        script,
        values,
    })
}

/// The script: a job, checked as `berth job run` checks one.
fn read_script(file: &str, script: Value) -> Result<Job, Problem> {
    let problem = |field: Option<String>, message: String| Problem {
        source: Source {
            file: format!("{file}: script"),
            index: 0,
            in_template: false,
        },
        field,
        message,
    };
    let mut script = script;
    if let Value::Object(fields) = &mut script {
        fields.remove("kind");
    }
    let job: Job = serde_path_to_error::deserialize(script)
        .map_err(|e| problem(Some(e.path().to_string()), e.inner().to_string()))?;
    if let Err(errors) = job.clone().completed().validate() {
        let first = &errors.errors()[0];
        return Err(problem(Some(first.field.clone()), first.message.clone()));
    }
    Ok(job)
}

/// An object as a document spells it, `kind:` first.
fn as_sent(object: &Object) -> Value {
    match object {
        Object::Service(s) => with_kind("Service", s),
        Object::Link(l) => with_kind("Link", l),
        Object::Route(r) => with_kind("Route", r),
        Object::Job(j) => with_kind("Job", j),
        Object::CronJob(c) => with_kind("CronJob", c),
    }
}

fn with_kind<T: serde::Serialize>(kind: &str, object: &T) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert("kind".into(), Value::String(kind.into()));
    if let Ok(Value::Object(own)) = serde_json::to_value(object) {
        fields.extend(own);
    }
    Value::Object(fields)
}

/// `berth process --parameters`: one row per parameter, a generated one
/// marked with its expression.
fn parameters_table(template: &Template) -> String {
    let rows: Vec<Vec<String>> = template
        .parameters
        .iter()
        .map(|p| {
            let value = match (&p.value, &p.from) {
                (Some(value), _) => value.clone(),
                (None, Some(from)) => format!("generated from {from}"),
                (None, None) if p.required => "(required)".to_owned(),
                (None, None) => String::new(),
            };
            vec![p.name.clone(), value, p.description.clone()]
        })
        .collect();
    output::table(&["NAME", "VALUE", "DESCRIPTION"], &rows)
}

/// Uniform draws from the kernel's random source (`/dev/urandom`); a
/// read error is kept and reported once the draws are done.
struct OsRandom {
    source: File,
    failed: Option<std::io::Error>,
}

impl OsRandom {
    fn open() -> anyhow::Result<Self> {
        Ok(Self {
            source: File::open("/dev/urandom").context("opening /dev/urandom")?,
            failed: None,
        })
    }

    /// A number below `below`, without modulo bias: draws that fall in
    /// the last, partial run of `below` are drawn again.
    fn below(&mut self, below: usize) -> usize {
        let below = u32::try_from(below.max(1)).unwrap_or(u32::MAX);
        let limit = u32::MAX - u32::MAX % below;
        loop {
            let mut bytes = [0u8; 4];
            if let Err(e) = self.source.read_exact(&mut bytes) {
                self.failed.get_or_insert(e);
                return 0;
            }
            let drawn = u32::from_le_bytes(bytes);
            if drawn < limit {
                return (drawn % below) as usize;
            }
        }
    }

    fn check(self) -> anyhow::Result<()> {
        match self.failed {
            None => Ok(()),
            Some(e) => Err(e).context("reading /dev/urandom"),
        }
    }
}

//! `berth process` and `berth new-app`: a template file's parameters
//! resolved (given, defaulted or generated from the OS's random source),
//! its objects rendered and checked as `berth apply` checks documents, and
//! for `new-app` created on the master in one commit, all or nothing.
//! Generated values are printed once; afterwards they live only where
//! the template puts them, as secrets (a service's `publish` or a
//! container's `secretEnv`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use berth_model::template::{with_kind, Template, Values};
use berth_model::Job;
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::apply::document::{self, Document, Object, Problem, Source};
use crate::apply::InvalidDocuments;
use crate::generate;
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
    /// did not succeed. The objects stay, as OpenShift's do: fix the
    /// cause and run the job again, or remove them.
    #[arg(long)]
    pub wait: bool,
    /// Link this existing service to the template's `linkable` services,
    /// in the same all-or-nothing commit (repeatable). Links are rewired
    /// live: the service is not restarted.
    #[arg(long = "link-to", value_name = "SERVICE")]
    pub link_to: Vec<String>,
}

/// A template's objects, checked, and its script job.
struct Rendered {
    documents: Vec<Document>,
    script: Option<Job>,
    values: Values,
    linkable: Vec<berth_model::template::Linkable>,
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
    let mut objects: Vec<Value> = rendered
        .documents
        .iter()
        .map(|d| as_sent(&d.object))
        .collect();
    objects.extend(links_to(&file, &args.link_to, &rendered.linkable)?);
    let created = client
        .create_batch(&objects)
        .await
        .with_context(|| format!("nothing created from {file}"))?;
    let mut text: String = created
        .created
        .iter()
        .map(|object| format!("{object} created\n"))
        .collect();
    if !args.link_to.is_empty() {
        let variables: Vec<String> = rendered
            .linkable
            .iter()
            .map(|l| format!("{}_HOST/_PORT", berth_model::link::env_prefix(&l.service)))
            .collect();
        text.push_str(&format!(
            "note: {} running pods reach the new services now; {} reach pods created from now on\n",
            args.link_to.join(", "),
            variables.join(", ")
        ));
    }
    text.push_str(&generate::shown_once(
        rendered
            .values
            .generated
            .iter()
            .map(|name| (name.as_str(), rendered.values.values[name].as_str())),
    ));
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

/// The `Link` objects of `--link-to`: each service named there linked to
/// each of the template's linkable services.
fn links_to(
    file: &str,
    link_to: &[String],
    linkable: &[berth_model::template::Linkable],
) -> anyhow::Result<Vec<Value>> {
    if link_to.is_empty() {
        return Ok(Vec::new());
    }
    if linkable.is_empty() {
        anyhow::bail!("--link-to: {file} has no linkable services (its linkable: list is empty)");
    }
    let mut links = Vec::new();
    for service in link_to {
        berth_model::validate_dns_label(service)
            .map_err(|e| anyhow::anyhow!("--link-to {service}: {e}"))?;
        for target in linkable {
            links.push(serde_json::json!({
                "kind": "Link",
                "service": service,
                "target": target.service,
                "port": target.port,
            }));
        }
    }
    Ok(links)
}

/// The stored template named `name` (the argument was no file): the
/// project's, else the shared library's.
async fn stored(client: &MasterClient, name: &Path) -> anyhow::Result<(String, Template)> {
    let name = name.display().to_string();
    let (shown, template) = find_stored(client, &name).await.with_context(|| {
        format!(
            "{name} is neither a file, a template of project {} nor a shared one",
            client.project()
        )
    })?;
    Ok((shown, template.object))
}

/// Template `name` of the project, else of the shared library, with how
/// messages call it.
async fn find_stored(
    client: &MasterClient,
    name: &str,
) -> anyhow::Result<(String, berth_model::api::Versioned<Template>)> {
    match client.get_template(name).await {
        Ok(template) => Ok((format!("template {name}"), template)),
        Err(e) if e.is_not_found() => {
            let shared = client.get_shared_template(name).await?;
            Ok((format!("shared template {name}"), shared))
        }
        Err(e) => Err(e.into()),
    }
}

/// `berth template`.
#[derive(Debug, Args)]
#[command(
    after_help = "A template is found in the project first, then in the shared library,
which every user of every project reads and only the cluster's admin writes.

Examples:\n  \
    berth template create -f examples/templates/web-db.yaml\n  \
    berth template create -f examples/templates/web-db.yaml --shared\n  \
    berth new-app web-db -p NAME=shop\n  \
    berth template describe web-db\n  \
    berth template export shop-web shop-db --as shop --parameterize image,replicas\n  \
    berth template rm web-db"
)]
pub struct TemplateArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TemplateCommand,
}

/// The `berth template` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// Store a template file in the project, for `berth new-app NAME`
    /// (or with --shared in the library every project reads).
    Create {
        /// The template file.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
        /// Store it in the shared library, which every user of every
        /// project reads (the cluster's admin only).
        #[arg(long)]
        shared: bool,
    },
    /// List the project's templates and the shared library's.
    Ls {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show a template (the project's, else the shared one): its
    /// description and parameters, or all of it.
    Describe {
        /// The template.
        name: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Capture existing services, with their links and the routes to
    /// them, as a template: printed as YAML, or stored with --as. Every
    /// secret becomes a generated parameter (never a copied value), and
    /// the names' common prefix the NAME parameter, so `berth new-app`
    /// makes a working copy under another name.
    Export {
        /// The services.
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
        /// Store the template in the project under this name.
        #[arg(long = "as", value_name = "NAME")]
        name: Option<String>,
        /// Also make parameters of each container's image and each
        /// service's replicas (defaulting to today's).
        #[arg(long, value_delimiter = ',', value_parser = ["image", "replicas"])]
        parameterize: Vec<String>,
    },
    /// Remove a template (what was made from it stays).
    Rm {
        /// The template.
        name: String,
        /// Remove it from the shared library (the cluster's admin only).
        #[arg(long)]
        shared: bool,
    },
}

/// Runs one `berth template` command.
pub async fn run(client: &MasterClient, command: TemplateCommand) -> anyhow::Result<()> {
    match command {
        TemplateCommand::Create { file, shared } => {
            let (shown, template) = read_template(&file)?;
            if let Err(errors) = template.validate() {
                let lines: Vec<String> = errors
                    .errors()
                    .iter()
                    .map(|e| format!("{shown}: {}: {}", e.field, e.message))
                    .collect();
                anyhow::bail!("template not stored:\n  {}", lines.join("\n  "));
            }
            if shared {
                let stored = client.create_shared_template(&template).await?;
                return output::print(&format!(
                    "template/{} stored in the shared library\n",
                    stored.object.name
                ));
            }
            let stored = client.create_template(&template).await?;
            output::print(&format!("template/{} stored\n", stored.object.name))
        }
        TemplateCommand::Ls { output } => {
            let own = client.list_templates().await?;
            // A master from before the shared library has none.
            let shared = match client.list_shared_templates().await {
                Err(e) if e.is_not_found() => Vec::new(),
                found => found?,
            };
            if let Some(text) = output::structured(
                output,
                &serde_json::json!({"project": own, "shared": shared}),
            )? {
                return output::print(&text);
            }
            let scope = format!("project {}", client.project());
            let rows: Vec<Vec<String>> = own
                .iter()
                .map(|t| (scope.as_str(), t))
                .chain(shared.iter().map(|t| ("shared", t)))
                .map(|(scope, t)| {
                    vec![
                        t.object.name.clone(),
                        scope.to_owned(),
                        t.object.parameters.len().to_string(),
                        t.object.objects.len().to_string(),
                        t.object.description.clone(),
                    ]
                })
                .collect();
            output::print(&output::table(
                &["NAME", "FROM", "PARAMETERS", "OBJECTS", "DESCRIPTION"],
                &rows,
            ))
        }
        TemplateCommand::Describe { name, output } => {
            let (_, template) = find_stored(client, &name).await?;
            if let Some(text) = output::structured(output, &template)? {
                return output::print(&text);
            }
            let t = &template.object;
            let kinds: Vec<&str> = t
                .objects
                .iter()
                .filter_map(|o| o.get("kind").and_then(Value::as_str))
                .collect();
            let linkable: Vec<String> = t
                .linkable
                .iter()
                .map(|l| format!("{}:{}", l.service, l.port))
                .collect();
            output::print(&format!(
                "Name:         {}\nDescription:  {}\nObjects:      {}\nScript:       {}\nLinkable:     {}\n\n{}",
                t.name,
                t.description,
                kinds.join(", "),
                if t.script.is_some() { "yes" } else { "none" },
                if linkable.is_empty() { "none".to_owned() } else { linkable.join(", ") },
                parameters_table(t)
            ))
        }
        TemplateCommand::Export {
            services,
            name,
            parameterize,
        } => {
            let shown = name.clone().unwrap_or_else(|| services[0].clone());
            let template = client
                .export_template(&shown, &services, &parameterize)
                .await?;
            if name.is_some() {
                let stored = client.create_template(&template).await?;
                return output::print(&format!(
                    "template/{} stored (berth new-app {} -p NAME=...)\n",
                    stored.object.name, stored.object.name
                ));
            }
            let value = with_kind("Template", &template);
            output::print(&output::yaml(&value).context("cannot encode the template as YAML")?)
        }
        TemplateCommand::Rm { name, shared } => {
            if shared {
                client.delete_shared_template(&name).await?;
                return output::print(&format!(
                    "template/{name} removed from the shared library\n"
                ));
            }
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
    let mut random = generate::OsRandom::open()?;
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
        linkable: rendered.linkable,
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
        Object::BuildConfig(b) => with_kind("BuildConfig", b),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> (String, Template) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/templates")
            .join(name);
        read_template(&path).expect("example")
    }

    fn input(params: &[(&str, &str)]) -> TemplateInput {
        TemplateInput {
            template: PathBuf::from("unused"),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            param_file: None,
        }
    }

    #[test]
    fn the_examples_render_with_their_script_and_linkable_services() {
        let (file, template) = example("web-db-seeded.yaml");
        let rendered = render(
            &file,
            &template,
            &input(&[("NAME", "shop"), ("ROUTER", "10.0.0.1")]),
        )
        .expect("rendered");
        let script = rendered.script.expect("a script job");
        assert_eq!(script.name, "shop-seed");
        let password = &rendered.values.values["DB_PASSWORD"];
        assert_eq!(script.template.containers[0].secret_env[0].value, *password);
        assert_eq!(rendered.linkable[0].service, "shop-db");
        let (file, template) = example("web-db.yaml");
        let rendered = render(&file, &template, &input(&[("NAME", "a")])).expect("rendered");
        assert!(rendered.script.is_none());
        assert_eq!(rendered.linkable[0].port, 5432);
    }

    #[test]
    fn link_to_links_each_service_to_each_linkable_one() {
        let linkable = [berth_model::template::Linkable {
            service: "shop-db".into(),
            port: 5432,
        }];
        let links = links_to("t.yaml", &["web".into(), "api".into()], &linkable).expect("links");
        assert_eq!(
            links,
            [
                serde_json::json!({"kind": "Link", "service": "web", "target": "shop-db", "port": 5432}),
                serde_json::json!({"kind": "Link", "service": "api", "target": "shop-db", "port": 5432}),
            ]
        );
        assert!(links_to("t.yaml", &[], &[]).expect("none").is_empty());
        let none = links_to("t.yaml", &["web".into()], &[]).expect_err("no linkable");
        assert!(
            none.to_string()
                .starts_with("--link-to: t.yaml has no linkable"),
            "{none}"
        );
        let bad = links_to("t.yaml", &["Web_1".into()], &linkable).expect_err("bad name");
        assert!(bad.to_string().starts_with("--link-to Web_1:"), "{bad}");
    }
}

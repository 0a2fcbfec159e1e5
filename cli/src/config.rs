//! Where the cluster commands find the master: `berth login` saves the
//! master's URL and an admin token to `$XDG_CONFIG_HOME/berth/config.json`
//! (by default `~/.config/berth/config.json`), readable by its owner only;
//! `BERTH_URL` and `BERTH_TOKEN` override what the file says. The project
//! the commands work in is `berth -p NAME`, else `BERTH_PROJECT`, else the
//! one `berth project use` saved, else `default`.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::{Deserialize, Serialize};

/// Overrides the saved master URL.
pub const URL_ENV: &str = "BERTH_URL";

/// Overrides the saved token.
pub const TOKEN_ENV: &str = "BERTH_TOKEN";

/// Overrides the saved project.
pub const PROJECT_ENV: &str = "BERTH_PROJECT";

/// `berth -p NAME`, which beats everything else; set once, by `main`.
static PROJECT_FLAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records `berth -p NAME` for every command of this run.
pub fn set_project_flag(project: String) {
    let _ = PROJECT_FLAG.set(project);
}

/// Mode of the config file: it holds an admin token.
const FILE_MODE: u32 = 0o600;

/// Mode of berth's config directory.
const DIR_MODE: u32 = 0o700;

/// How to reach the master: the saved login, or the environment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The master's base URL, e.g. `http://master.example:7070`, without a
    /// trailing slash.
    pub url: String,
    /// A bearer token the master accepts (the admin token).
    pub token: String,
    /// The master's CA certificate (PEM), the only one trusted for it, when
    /// it serves HTTPS with its own CA (`berth login --ca-cert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// The project the commands work in (`berth project use`); `None`
    /// for `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("project", &self.project)
            .finish()
    }
}

/// What went wrong finding, reading or writing the login.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither `XDG_CONFIG_HOME` nor `HOME` says where the file goes.
    #[error("cannot tell where berth's config goes: set HOME or XDG_CONFIG_HOME")]
    NoConfigDir,
    /// No saved login and no environment to stand in for it.
    #[error(
        "not logged in to a berth master: run `berth login URL --token TOKEN` \
         (or set {URL_ENV} and {TOKEN_ENV})"
    )]
    NotLoggedIn,
    /// One of `BERTH_URL` and `BERTH_TOKEN` is set, the other is not, and
    /// there is no saved login to take it from.
    #[error(
        "{missing} is not set and there is no saved login to take it from: \
         set it too, or run `berth login URL --token TOKEN`"
    )]
    Incomplete {
        /// The variable that is missing.
        missing: &'static str,
    },
    /// The file exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// The file is not a berth config.
    #[error("{} is not a valid berth config; run `berth login` again", path.display())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What serde_json reported.
        #[source]
        error: serde_json::Error,
    },
    /// The file or its directory cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// The master URL is not an `http://` or `https://` URL.
    #[error("invalid master URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads one environment variable; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The process's own environment.
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// `$XDG_CONFIG_HOME/berth/config.json`, or `$HOME/.config/berth/config.json`
/// when `XDG_CONFIG_HOME` is unset, empty or relative (as the XDG base
/// directory spec says to treat it).
pub fn config_path(env: EnvLookup<'_>) -> Result<PathBuf, ConfigError> {
    let non_empty = |name| {
        env(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    let base = match non_empty("XDG_CONFIG_HOME").filter(|path| path.is_absolute()) {
        Some(base) => base,
        None => non_empty("HOME")
            .ok_or(ConfigError::NoConfigDir)?
            .join(".config"),
    };
    Ok(base.join("berth").join("config.json"))
}

/// The master to talk to: `BERTH_URL` and `BERTH_TOKEN` where set, the saved
/// login for the rest. The file is read only when the environment does not
/// say everything.
pub fn resolve(env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    let var = |name| {
        env(name)
            .filter(|value| !value.is_empty())
            .map(|value| value.to_string_lossy().into_owned())
    };
    let (url, token) = (var(URL_ENV), var(TOKEN_ENV));
    // The saved file is read even when the environment names the master:
    // it may hold the CA that master is trusted with.
    let saved = match config_path(env) {
        Ok(path) => load(&path)?,
        // Without HOME there is no file, which is what the caller is told.
        Err(ConfigError::NoConfigDir) => None,
        Err(error) => return Err(error),
    };
    let config = merge(url, token, saved)?;
    let project = PROJECT_FLAG
        .get()
        .cloned()
        .or_else(|| var(PROJECT_ENV))
        .or(config.project);
    Ok(Config {
        url: normalize_url(&config.url)?,
        token: config.token,
        ca_pem: config.ca_pem,
        project,
    })
}

/// The environment's values over the saved ones.
fn merge(
    url: Option<String>,
    token: Option<String>,
    saved: Option<Config>,
) -> Result<Config, ConfigError> {
    match (url, token, saved) {
        (Some(url), Some(token), saved) => {
            let (ca_pem, project) = saved.map(|s| (s.ca_pem, s.project)).unwrap_or_default();
            Ok(Config {
                url,
                token,
                ca_pem,
                project,
            })
        }
        (url, token, Some(saved)) => Ok(Config {
            url: url.unwrap_or(saved.url),
            token: token.unwrap_or(saved.token),
            ca_pem: saved.ca_pem,
            project: saved.project,
        }),
        (None, None, None) => Err(ConfigError::NotLoggedIn),
        (Some(_), None, None) => Err(ConfigError::Incomplete { missing: TOKEN_ENV }),
        (None, Some(_), None) => Err(ConfigError::Incomplete { missing: URL_ENV }),
    }
}

/// The saved login, or `None` when there is no file.
pub fn load(path: &Path) -> Result<Option<Config>, ConfigError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                error,
            })
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            error,
        })
}

/// Saves the login to `path`, replacing the file atomically. The file is
/// 0600 and its directory 0700 even if they existed with looser modes: the
/// token is an admin credential.
pub fn save(path: &Path, config: &Config) -> Result<(), ConfigError> {
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |error| ConfigError::Write { path, error }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(write_error(dir))?;
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)).map_err(write_error(dir))?;

    let mut text = serde_json::to_vec_pretty(config).map_err(|error| ConfigError::Write {
        path: path.to_owned(),
        error: io::Error::other(error),
    })?;
    text.push(b'\n');
    // Written beside the file and renamed over it, so a crash or a full disk
    // never leaves a half-written login behind.
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{file_name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&temporary)
        .map_err(write_error(&temporary))?;
    // `mode` only applies to a new file; a leftover one may have another.
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .and_then(|()| file.write_all(&text))
        .and_then(|()| file.sync_all())
        .map_err(write_error(&temporary))?;
    fs::rename(&temporary, path).map_err(write_error(path))
}

/// The URL checked to be `http://` or `https://` with a host, without a
/// trailing slash (paths are appended to it). Several masters' URLs
/// (`URL1,URL2,...`, HA masters) are each checked, and kept as a list.
pub fn normalize_url(text: &str) -> Result<String, ConfigError> {
    if !text.contains(',') {
        return normalize_one_url(text);
    }
    let urls = berth_client::masters::split_list(text);
    if urls.is_empty() {
        return Err(ConfigError::InvalidUrl {
            url: text.to_owned(),
            reason: "expected http://HOST:PORT or https://HOST:PORT".to_owned(),
        });
    }
    let urls: Vec<String> = urls
        .iter()
        .map(|url| normalize_one_url(url))
        .collect::<Result<_, _>>()?;
    Ok(urls.join(","))
}

/// One master's URL, checked as [`normalize_url`] says.
fn normalize_one_url(text: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidUrl {
        url: text.to_owned(),
        reason: reason.to_owned(),
    };
    const EXPECTED: &str = "expected http://HOST:PORT or https://HOST:PORT";
    let url = Url::parse(text).map_err(|_| invalid(EXPECTED))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(invalid(EXPECTED));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not hold credentials: use --token"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), OsString::from(value)))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn config(url: &str, token: &str) -> Config {
        Config {
            project: None,
            url: url.to_owned(),
            token: token.to_owned(),
            ca_pem: None,
        }
    }

    #[test]
    fn the_file_lives_under_xdg_config_home_or_home() {
        let path = |pairs: &[(&str, &str)]| config_path(&env_of(pairs));
        assert_eq!(
            path(&[("XDG_CONFIG_HOME", "/x/conf"), ("HOME", "/home/a")]).unwrap(),
            PathBuf::from("/x/conf/berth/config.json")
        );
        for xdg in ["", "relative/conf"] {
            assert_eq!(
                path(&[("XDG_CONFIG_HOME", xdg), ("HOME", "/home/a")]).unwrap(),
                PathBuf::from("/home/a/.config/berth/config.json"),
                "{xdg:?}"
            );
        }
        assert!(matches!(path(&[]), Err(ConfigError::NoConfigDir)));
        assert!(matches!(
            path(&[("HOME", "")]),
            Err(ConfigError::NoConfigDir)
        ));
    }

    #[test]
    fn the_environment_overrides_the_saved_login() {
        let saved = || Some(config("http://saved:7070", "saved-token"));
        assert_eq!(
            merge(None, None, saved()).unwrap(),
            config("http://saved:7070", "saved-token")
        );
        assert_eq!(
            merge(Some("http://env:1".to_owned()), None, saved()).unwrap(),
            config("http://env:1", "saved-token")
        );
        assert_eq!(
            merge(None, Some("env-token".to_owned()), saved()).unwrap(),
            config("http://saved:7070", "env-token")
        );
        assert_eq!(
            merge(
                Some("http://env:1".to_owned()),
                Some("env-token".to_owned()),
                None
            )
            .unwrap(),
            config("http://env:1", "env-token")
        );
    }

    #[test]
    fn without_a_login_the_error_says_to_log_in() {
        let error = merge(None, None, None).unwrap_err();
        assert!(error.to_string().contains("berth login"), "{error}");
        let error = merge(Some("http://env:1".to_owned()), None, None).unwrap_err();
        assert!(
            error.to_string().starts_with("BERTH_TOKEN is not set"),
            "{error}"
        );
        let error = merge(None, Some("t".to_owned()), None).unwrap_err();
        assert!(
            error.to_string().starts_with("BERTH_URL is not set"),
            "{error}"
        );
    }

    #[test]
    fn a_complete_environment_needs_no_home() {
        let env = env_of(&[(URL_ENV, "http://env:7070/"), (TOKEN_ENV, "t")]);
        assert_eq!(resolve(&env).unwrap(), config("http://env:7070", "t"));
        let error = resolve(&env_of(&[])).unwrap_err();
        assert!(matches!(error, ConfigError::NotLoggedIn), "{error}");
        // Empty variables count as unset.
        let error = resolve(&env_of(&[(URL_ENV, ""), (TOKEN_ENV, "")])).unwrap_err();
        assert!(matches!(error, ConfigError::NotLoggedIn), "{error}");
    }

    #[test]
    fn urls_are_http_or_https_without_a_trailing_slash() {
        for (text, normalized) in [
            ("http://127.0.0.1:7070", "http://127.0.0.1:7070"),
            ("http://master:7070/", "http://master:7070"),
            ("https://master.example", "https://master.example"),
            (
                "https://master.example/berth/",
                "https://master.example/berth",
            ),
        ] {
            assert_eq!(normalize_url(text).unwrap(), normalized, "{text}");
        }
        for text in [
            "",
            "master:7070",
            "ftp://master",
            "http://",
            "http://master?x=1",
            "http://admin:pw@master",
            "unix:/run/berth.sock",
            "https://h1:7443,ftp://h2",
            ",",
        ] {
            assert!(normalize_url(text).is_err(), "{text}");
        }
        assert_eq!(
            normalize_url("https://h1:7443/, https://h2:7443").unwrap(),
            "https://h1:7443,https://h2:7443",
            "several masters stay a list"
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let debug = format!("{:?}", config("http://m", "hunter2"));
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn the_file_is_plain_json() {
        let text = serde_json::to_string(&config("http://m:1", "t")).unwrap();
        assert_eq!(text, r#"{"url":"http://m:1","token":"t"}"#);
    }
}

//! Values generated from expressions such as `[a-zA-Z0-9]{16}` with the
//! kernel's random source, for a template's parameters (`berth new-app`)
//! and a service's variables (`berth run --generate-env`), and how they
//! are shown: once, when they are made.

use std::fs::File;
use std::io::Read as _;

use anyhow::Context as _;

/// Generated values as printed the only time they are shown; nothing
/// when there are none.
pub fn shown_once<'a>(values: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let lines: String = values
        .map(|(name, value)| format!("  {name}={value}\n"))
        .collect();
    if lines.is_empty() {
        return lines;
    }
    format!("generated (shown only now; kept as secrets):\n{lines}")
}

/// `--generate-env`'s variables, each with a value from the kernel's
/// random source, generated as a template's parameters are.
pub fn generate_vars(
    wanted: &[(String, String)],
) -> anyhow::Result<Vec<berth_model::template::GeneratedVar>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let mut random = OsRandom::open()?;
    let mut vars = Vec::new();
    for (name, from) in wanted {
        let var = berth_model::template::GeneratedVar::generate(name, from, &mut |below| {
            random.below(below)
        })
        .context("--generate-env")?;
        vars.push(var);
    }
    random.check()?;
    Ok(vars)
}

/// Uniform draws from the kernel's random source (`/dev/urandom`); a
/// read error is kept and reported once the draws are done.
pub struct OsRandom {
    source: File,
    failed: Option<std::io::Error>,
}

impl OsRandom {
    /// Opens the source.
    pub fn open() -> anyhow::Result<Self> {
        Ok(Self {
            source: File::open("/dev/urandom").context("opening /dev/urandom")?,
            failed: None,
        })
    }

    /// A number below `below`, without modulo bias: draws that fall in
    /// the last, partial run of `below` are drawn again.
    pub fn below(&mut self, below: usize) -> usize {
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

    /// The first read error, if any.
    pub fn check(self) -> anyhow::Result<()> {
        match self.failed {
            None => Ok(()),
            Some(e) => Err(e).context("reading /dev/urandom"),
        }
    }
}

//! The numpy/OpenBLAS reference: an interpreter with numpy (`--python`, or a venv pupa-bench
//! creates once and reuses, with the pinned numpy of `bench/requirements.txt`) running
//! `bench/ref_numpy.py`.
//!
//! Every interpreter pupa-bench starts (the numpy check, pip, the timed runs) gets the same
//! OpenBLAS environment: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (so OpenBLAS picks its
//! kernels for this CPU itself), thread counts set to the run's.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A ready numpy reference.
pub struct NumpyRef {
    python: PathBuf,
    script: PathBuf,
    /// `numpy.__version__`, for the rows' note.
    pub version: String,
    /// Why this is not the pinned numpy of the venv (the system python3's, used as a fallback).
    pub fallback: Option<String>,
    thread_cpu: bool,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv pupa-bench manages: `$PUPA_BENCH_VENV`, else `$XDG_CACHE_HOME/pupa-bench/venv`,
/// else `~/.cache/pupa-bench/venv`, else under the temporary directory.
pub fn venv_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = env("PUPA_BENCH_VENV") {
        return d.into();
    }
    let cache = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("pupa-bench").join("venv")
}

/// `cmd` with the OpenBLAS environment of the reference.
fn openblas_env(cmd: &mut Command, threads: usize) -> &mut Command {
    cmd.env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
}

/// The last non-empty line of a process's stderr (one-line error reports).
fn last_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    // (venv's last line names the temporary path it failed in: the line before says why)
    let line = s
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with("Failing command:"));
    line.map_or("no message".into(), |l| {
        l.trim().chars().take(200).collect()
    })
}

/// `numpy.__version__` under `python`, or why not.
fn numpy_version(python: &Path) -> Result<String, String> {
    let out = openblas_env(&mut Command::new(python), 1)
        .args(["-c", "import numpy; print(numpy.__version__)"])
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{} not found", python.display()),
            _ => format!("cannot run {}: {e}", python.display()),
        })?;
    if !out.status.success() {
        return Err(format!(
            "{} has no numpy: {}",
            python.display(),
            last_line(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run_step(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{what}: {} not found", cmd.get_program().to_string_lossy())
        }
        _ => format!("{what}: {e}"),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed: {}", last_line(&out.stderr)))
    }
}

/// Creates the venv at `dir` with the pinned numpy: built beside it under a temporary name and
/// renamed into place, so that an interrupted or concurrent setup never leaves a half venv.
fn create_venv(dir: &Path, base_python: &str) -> Result<PathBuf, String> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        run_step(
            Command::new(base_python).args(["-m", "venv"]).arg(&tmp),
            &format!("{base_python} -m venv"),
        )
        .map_err(|e| {
            if e.ends_with("not found") {
                e
            } else {
                format!("{e} (Debian/Ubuntu: apt-get install python3-venv)")
            }
        })?;
        let req = manifest_dir().join("bench/requirements.txt");
        run_step(
            openblas_env(&mut Command::new(tmp.join("bin/python")), 1)
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(&req),
            "pip install numpy",
        )?;
        if numpy_version(&dir.join("bin/python")).is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if std::fs::rename(&tmp, dir).is_err() {
            // Another pupa-bench finished first: use its venv if it works.
            numpy_version(&dir.join("bin/python"))?;
        }
        Ok(dir.join("bin/python"))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// The numpy reference: `python` if given (it must import numpy), else pupa-bench's venv,
/// created on first use. Err is one line saying what failed and how to set it up by hand.
pub fn setup(python: Option<&str>, thread_cpu: bool, quiet: bool) -> Result<NumpyRef, String> {
    let script = manifest_dir().join("bench/ref_numpy.py");
    let make = |python: PathBuf, version: String| NumpyRef {
        python,
        script: script.clone(),
        version,
        fallback: None,
        thread_cpu,
    };
    if let Some(py) = python {
        let py = PathBuf::from(py);
        return numpy_version(&py)
            .map(|v| make(py, v))
            .map_err(|e| format!("{e} (pip install numpy there, or --no-numpy)"));
    }
    let dir = venv_dir();
    let vpy = dir.join("bin/python");
    if let Ok(v) = numpy_version(&vpy) {
        return Ok(make(vpy, v));
    }
    // A progress line only on a terminal, erased again, so that a failure stays one line.
    let progress = !quiet && std::io::stderr().is_terminal();
    if progress {
        eprint!(
            "pupa-bench: setting up the numpy reference in {} (once)...",
            dir.display()
        );
    }
    let hint = format!(
        "set it up with `python3 -m venv {d} && {d}/bin/pip install -r {r}` (or --python PY with numpy, or --no-numpy)",
        d = dir.display(),
        r = manifest_dir().join("bench/requirements.txt").display()
    );
    let made = create_venv(&dir, "python3").and_then(|vpy| numpy_version(&vpy).map(|v| (vpy, v)));
    if progress {
        eprint!("\r\x1b[2K");
    }
    match made {
        Ok((vpy, v)) => Ok(make(vpy, v)),
        // Offline, but the system python3 has a numpy: use it, unpinned, and say so (one line).
        Err(e) => match numpy_version(Path::new("python3")) {
            Ok(v) if !quiet_fallback() => Ok(NumpyRef {
                fallback: Some(format!(
                    "numpy reference: using python3's numpy {v} (not the pinned one: {e}; {hint})"
                )),
                ..make("python3".into(), v)
            }),
            _ => Err(format!("{e}; {hint}")),
        },
    }
}

/// `PUPA_BENCH_NO_SYSTEM_NUMPY=1`: never fall back to the system python3's numpy.
fn quiet_fallback() -> bool {
    std::env::var_os("PUPA_BENCH_NO_SYSTEM_NUMPY").is_some_and(|v| v == "1")
}

impl NumpyRef {
    /// Seconds of `repeats` timed runs after `warmup` untimed ones of `args` (see ref_numpy.py).
    pub fn time(
        &self,
        args: &[String],
        warmup: usize,
        repeats: usize,
        threads: usize,
    ) -> Result<Vec<f64>, String> {
        let clock = if self.thread_cpu {
            "thread-cpu"
        } else {
            "wall"
        };
        let out = openblas_env(&mut Command::new(&self.python), threads)
            .arg(&self.script)
            .args(args)
            .arg(warmup.to_string())
            .arg(repeats.to_string())
            .env("PUPA_BENCH_CLOCK", clock)
            .output()
            .map_err(|e| {
                format!(
                    "running {} {}: {e} (use --no-numpy to skip)",
                    self.python.display(),
                    self.script.display()
                )
            })?;
        if !out.status.success() {
            return Err(format!(
                "numpy reference failed (use --no-numpy to skip): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("numpy reference printed bad JSON: {e}"))?;
        v["seconds"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .ok_or_else(|| "numpy reference: no seconds".into())
    }
}

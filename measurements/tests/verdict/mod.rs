//! Helpers shared by the verification tests: reading a `Verdict` and running `pupa-measure
//! verify`.
#![allow(dead_code)]

use std::process::Command;

use pupa_measurements::verify::Verdict;

/// Names of the failed checks.
pub fn failed(v: &Verdict) -> Vec<&str> {
    v.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect()
}

/// The detail of check `name` (panics if the verdict has no such check).
pub fn detail<'a>(v: &'a Verdict, name: &str) -> &'a str {
    &v.get(name)
        .unwrap_or_else(|| panic!("no check {name}"))
        .detail
}

/// `pupa-measure verify ARGS`: exit code, stdout, stderr.
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pupa-measure"))
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

//! The `--tee` argument of the command lines (`pupa-measure`, `pupa-host`): the names of
//! [`TeeKind`] (`dev`, `snp`, `tdx`; `none` as another name for `dev`), parsed by its
//! `FromStr`, so every CLI spells the kinds as the guest, the manifest and the policy do.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
pub use pupa_spec::tee::TeeKind;

/// A clap value parser accepting the names of `kinds` (listed by `--help`), for
/// `#[arg(value_parser = tee_arg::parser(&[...]))]`.
pub fn parser(kinds: &'static [TeeKind]) -> impl TypedValueParser<Value = TeeKind> {
    let values = kinds.iter().map(|&k| {
        let v = PossibleValue::new(k.name()).help(help(k));
        if k == TeeKind::Dev {
            v.alias("none")
        } else {
            v
        }
    });
    PossibleValuesParser::new(values).try_map(|s| s.parse::<TeeKind>())
}

fn help(k: TeeKind) -> &'static str {
    match k {
        TeeKind::Dev => "no TEE: a plain VM with insecure development evidence (alias: none)",
        TeeKind::Snp => "AMD SEV-SNP",
        TeeKind::Tdx => "Intel TDX",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[arg(long, value_parser = parser(&[TeeKind::Dev, TeeKind::Snp, TeeKind::Tdx]))]
        tee: TeeKind,
        #[arg(long, value_parser = parser(&[TeeKind::Snp, TeeKind::Tdx]))]
        measure: Option<TeeKind>,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
    }

    #[test]
    fn the_existing_spellings_parse() {
        for (s, k) in [
            ("dev", TeeKind::Dev),
            ("none", TeeKind::Dev),
            ("snp", TeeKind::Snp),
            ("tdx", TeeKind::Tdx),
        ] {
            assert_eq!(parse(&["--tee", s]).unwrap().tee, k, "{s}");
        }
        assert_eq!(
            parse(&["--tee", "dev", "--measure", "tdx"])
                .unwrap()
                .measure,
            Some(TeeKind::Tdx)
        );
    }

    #[test]
    fn other_spellings_and_kinds_are_refused() {
        assert!(parse(&["--tee", "sev"]).is_err());
        assert!(parse(&["--tee", "SNP"]).is_err());
        // a parser for a subset refuses the other kinds
        assert!(parse(&["--tee", "dev", "--measure", "dev"]).is_err());
        assert!(parse(&["--tee", "dev", "--measure", "none"]).is_err());
    }
}

//! `seglab evaluate` (being built, see issue 2).
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("evaluate is not built yet")
}

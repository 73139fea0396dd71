use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct SchemasArgs {
    /// Directory to write `<type>.v<version>.json` files into.
    #[arg(long, default_value = "schemas/json")]
    dir: PathBuf,
}

pub fn run(args: SchemasArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    for file in chorus_schemas::json_schema::render_all()? {
        let path = args.dir.join(&file.file_name);
        std::fs::write(&path, &file.content)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

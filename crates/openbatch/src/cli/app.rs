//! `openbatch app upload|list|show|set-default|delete`: application packages (openbatch's
//! own management operations; Azure keeps these in its management plane).

use std::path::PathBuf;

use openbatch_api::models::{ApplicationDetails, ApplicationUpdate};

use super::output::{emit, or_dash, size, time, Fields, Table};
use super::{api, GlobalArgs};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AppCommand {
    /// Upload a zip file as a version of an application (created if new; an existing version
    /// is replaced).
    Upload {
        /// The application id (letters, digits, hyphens and underscores).
        application_id: String,
        /// The version (letters, digits, hyphens, underscores and periods).
        version: String,
        /// The package: a zip file.
        file: PathBuf,
        /// The application's display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Also make this the default version.
        #[arg(long)]
        set_default: bool,
    },
    /// List applications with their versions and default version.
    List,
    /// Show one application and its packages.
    Show {
        /// The application id.
        application_id: String,
    },
    /// Set the version that references without a version get.
    SetDefault {
        /// The application id.
        application_id: String,
        /// The version.
        version: String,
    },
    /// Delete one version, or the whole application. A package that a pool references (by
    /// version, or as the default) cannot be deleted.
    Delete {
        /// The application id.
        application_id: String,
        /// The version; without it, every version and the application.
        version: Option<String>,
    },
}

pub(crate) async fn run_app(cmd: AppCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    match cmd {
        AppCommand::Upload {
            application_id,
            version,
            file,
            display_name,
            set_default,
        } => {
            let mut app = client
                .upload_application_package(
                    &application_id,
                    &version,
                    display_name.as_deref(),
                    &file,
                )
                .await
                .map_err(api)?;
            eprintln!("uploaded version '{version}' of application '{}'", app.id);
            if set_default {
                app = client
                    .update_application(
                        &application_id,
                        &ApplicationUpdate {
                            display_name: None,
                            default_version: Some(version.clone()),
                        },
                    )
                    .await
                    .map_err(api)?;
            }
            emit(g.output, &app, |a| show(a).print())
        }
        AppCommand::List => {
            let apps = client.list_application_details().await.map_err(api)?;
            emit(g.output, &apps, |apps| {
                let mut t = Table::new(&["ID", "DISPLAY NAME", "DEFAULT", "VERSIONS"]);
                for a in apps {
                    t.row(vec![
                        a.id.clone(),
                        a.display_name.clone(),
                        or_dash(a.default_version.as_ref()),
                        a.packages
                            .iter()
                            .map(|p| p.version.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    ]);
                }
                t.print()
            })
        }
        AppCommand::Show { application_id } => {
            let app = client
                .get_application_details(&application_id)
                .await
                .map_err(api)?;
            emit(g.output, &app, |a| show(a).print())
        }
        AppCommand::SetDefault {
            application_id,
            version,
        } => {
            let app = client
                .update_application(
                    &application_id,
                    &ApplicationUpdate {
                        display_name: None,
                        default_version: Some(version),
                    },
                )
                .await
                .map_err(api)?;
            emit(g.output, &app, |a| show(a).print())
        }
        AppCommand::Delete {
            application_id,
            version,
        } => {
            client
                .delete_application(&application_id, version.as_deref())
                .await
                .map_err(api)?;
            match version {
                Some(v) => eprintln!("deleted version '{v}' of application '{application_id}'"),
                None => eprintln!("deleted application '{application_id}'"),
            }
            Ok(())
        }
    }
}

fn show(a: &ApplicationDetails) -> Fields {
    let mut f = Fields::new();
    f.add("id", &a.id)
        .add("display name", &a.display_name)
        .add("default version", or_dash(a.default_version.as_ref()))
        .add("last modified", time(a.last_modified));
    for p in &a.packages {
        f.add(
            &format!("version {}", p.version),
            format!(
                "{}  sha256 {}  {}",
                size(p.size),
                &p.sha256[..p.sha256.len().min(16)],
                time(p.last_modified)
            ),
        );
    }
    f
}

//! Tables for people (comfy-table) and JSON for programs, shared by the list commands.

use crate::cli::OutputFormat;
use crate::error::Result;
use crate::outln;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;

/// Print `rows` as JSON or as a table with `header` (cells made by `cells`).
pub fn print<T: Serialize>(
    format: OutputFormat,
    rows: &[T],
    header: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) -> Result<()> {
    match format {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(rows)?),
        OutputFormat::Table => {
            let mut table = Table::new();
            table
                .load_preset(UTF8_BORDERS_ONLY)
                .set_header(header.to_vec());
            for row in rows {
                table.add_row(cells(row));
            }
            outln!("{table}");
        }
    }
    Ok(())
}

//! Typed tables at the Parquet boundary: each table is declared once with [`table!`], and that one
//! declaration drives its writer ([`Table::frame`]) and its reader ([`Table::from_frame`]). Rows hold
//! Rust types (enums included); values become Parquet columns, and enums their names, only here.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::CoreError;

/// A value type that can fill one Parquet column, nulls included.
pub trait Scalar: Sized + Clone {
    /// A column of present values.
    fn column(name: &str, values: Vec<Self>) -> Column;
    /// A column with nulls.
    fn nullable_column(name: &str, values: Vec<Option<Self>>) -> Column;
    /// The values of a column (None = null); `Err` says why the column does not fit this type.
    fn read(column: &Column) -> Result<Vec<Option<Self>>, String>;
}

macro_rules! numeric_scalar {
    ($ty:ty, $access:ident) => {
        impl Scalar for $ty {
            fn column(name: &str, values: Vec<Self>) -> Column {
                Column::new(name.into(), values)
            }
            fn nullable_column(name: &str, values: Vec<Option<Self>>) -> Column {
                Column::new(name.into(), values)
            }
            fn read(column: &Column) -> Result<Vec<Option<Self>>, String> {
                let values = column.$access().map_err(|e| e.to_string())?;
                Ok((0..values.len()).map(|i| values.get(i)).collect())
            }
        }
    };
}

numeric_scalar!(u64, u64);
numeric_scalar!(u32, u32);
numeric_scalar!(f64, f64);
numeric_scalar!(bool, bool);

impl Scalar for String {
    fn column(name: &str, values: Vec<Self>) -> Column {
        Column::new(name.into(), values)
    }
    fn nullable_column(name: &str, values: Vec<Option<Self>>) -> Column {
        Column::new(name.into(), values)
    }
    fn read(column: &Column) -> Result<Vec<Option<Self>>, String> {
        let values = column.str().map_err(|e| e.to_string())?;
        Ok((0..values.len()).map(|i| values.get(i).map(str::to_string)).collect())
    }
}

/// Makes a [`crate::names::Named`] enum a [`Scalar`] (a text column of its names).
#[macro_export]
macro_rules! named_scalar {
    ($ty:ty) => {
        impl $crate::output::schema::Scalar for $ty {
            fn column(name: &str, values: Vec<Self>) -> polars::prelude::Column {
                let names: Vec<&str> = values.iter().map(|v| $crate::names::Named::name(*v)).collect();
                polars::prelude::Column::new(name.into(), names)
            }
            fn nullable_column(name: &str, values: Vec<Option<Self>>) -> polars::prelude::Column {
                let names: Vec<Option<&str>> = values.iter().map(|v| v.map($crate::names::Named::name)).collect();
                polars::prelude::Column::new(name.into(), names)
            }
            fn read(column: &polars::prelude::Column) -> Result<Vec<Option<Self>>, String> {
                <String as $crate::output::schema::Scalar>::read(column)?
                    .into_iter()
                    .map(|v| match v {
                        None => Ok(None),
                        Some(text) => <Self as $crate::names::Named>::from_name(&text)
                            .map(Some)
                            .ok_or_else(|| format!("unknown value `{text}`")),
                    })
                    .collect()
            }
        }
    };
}

/// The type of one table column: a [`Scalar`] (never null) or an `Option` of one (nullable).
pub trait Cell: Sized + Clone {
    /// The column holding `values`.
    fn to_column(name: &str, values: Vec<Self>) -> Column;
    /// The values of `column`; `Err` names the problem (wrong type, a null where none may be).
    fn from_column(column: &Column) -> Result<Vec<Self>, String>;
}

impl<T: Scalar> Cell for T {
    fn to_column(name: &str, values: Vec<Self>) -> Column {
        T::column(name, values)
    }
    fn from_column(column: &Column) -> Result<Vec<Self>, String> {
        T::read(column)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| format!("null in row {i}")))
            .collect()
    }
}

impl<T: Scalar> Cell for Option<T> {
    fn to_column(name: &str, values: Vec<Self>) -> Column {
        T::nullable_column(name, values)
    }
    fn from_column(column: &Column) -> Result<Vec<Self>, String> {
        T::read(column)
    }
}

/// A table: its file name and columns, and the conversion of its rows to and from a frame.
pub trait Table: Sized {
    /// File stem: the table is `NAME.parquet`.
    const NAME: &'static str;
    /// Column names, in order.
    const COLUMNS: &'static [&'static str];
    /// The frame holding `rows`.
    fn frame(rows: &[Self]) -> Result<DataFrame, CoreError>;
    /// The rows of `df`, read from `origin` (named in errors).
    fn from_frame(df: &DataFrame, origin: &Path) -> Result<Vec<Self>, CoreError>;
}

/// The values of column `name` of `df` as `T`; errors name the file and the column.
pub fn read_cells<T: Cell>(df: &DataFrame, name: &str, origin: &Path) -> Result<Vec<T>, CoreError> {
    let column = df
        .column(name)
        .map_err(|_| CoreError::Table(format!("{}: no column `{name}`", origin.display())))?;
    T::from_column(column).map_err(|e| CoreError::Table(format!("{}: column `{name}`: {e}", origin.display())))
}

/// Declares a table: its row struct (with doc comments) and its [`Table`] implementation, from one
/// list of columns.
#[macro_export]
macro_rules! table {
    (
        $(#[$meta:meta])*
        pub struct $row:ident in $name:literal {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        pub struct $row {
            $( $(#[$field_meta])* pub $field: $ty ),*
        }

        impl $crate::output::schema::Table for $row {
            const NAME: &'static str = $name;
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];

            #[allow(clippy::clone_on_copy)]
            fn frame(rows: &[Self]) -> Result<polars::prelude::DataFrame, $crate::error::CoreError> {
                let columns = vec![$(
                    <$ty as $crate::output::schema::Cell>::to_column(
                        stringify!($field),
                        rows.iter().map(|r| r.$field.clone()).collect(),
                    )
                ),*];
                polars::prelude::DataFrame::new(rows.len(), columns)
                    .map_err(|e| $crate::error::CoreError::Table(format!("{}: {e}", $name)))
            }

            fn from_frame(
                df: &polars::prelude::DataFrame,
                origin: &std::path::Path,
            ) -> Result<Vec<Self>, $crate::error::CoreError> {
                $( let mut $field = $crate::output::schema::read_cells::<$ty>(df, stringify!($field), origin)?.into_iter(); )*
                let mut rows = Vec::with_capacity(df.height());
                for _ in 0..df.height() {
                    rows.push(Self { $( $field: $field.next().ok_or_else(|| {
                        $crate::error::CoreError::Table(format!("{}: column `{}` is short", origin.display(), stringify!($field)))
                    })? ),* });
                }
                Ok(rows)
            }
        }
    };
}

/// Writes `rows` to `dir/NAME.parquet` atomically and returns the path.
pub fn write_table<T: Table>(dir: &Path, rows: &[T]) -> Result<PathBuf, CoreError> {
    let path = dir.join(format!("{}.parquet", T::NAME));
    write_parquet(&path, &mut T::frame(rows)?)?;
    Ok(path)
}

/// Reads the rows of `dir/NAME.parquet`.
pub fn read_table<T: Table>(dir: &Path) -> Result<Vec<T>, CoreError> {
    let path = dir.join(format!("{}.parquet", T::NAME));
    T::from_frame(&read_parquet(&path)?, &path)
}

/// Writes `df` to `path` atomically: to a temporary file of a name unique to this writer in the same
/// folder, then renamed; the temporary file is removed when anything fails, so a killed or failed
/// run never leaves a half-written table, and two runs never write the same temporary file.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<(), CoreError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{stem}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| CoreError::io(path, e))?;
    let file: &File = tmp.as_file();
    ParquetWriter::new(file)
        .finish(df)
        .map_err(|e| CoreError::Table(format!("{}: {e}", path.display())))?;
    tmp.persist(path).map_err(|e| CoreError::io(path, e.error))?;
    Ok(())
}

/// Reads a Parquet file.
pub fn read_parquet(path: &Path) -> Result<DataFrame, CoreError> {
    let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
    read_parquet_columns(file, |_| true)
        .map(|(df, _)| df)
        .map_err(|problem| CoreError::Table(format!("{}: {problem}", path.display())))
}

/// Reads the columns of the Parquet `file` whose names `wanted` accepts, with the names of all its
/// columns; the problem as text when it cannot. A panic inside the reader (polars panics on some
/// types it was built without) is that problem, not a crash.
pub(crate) fn read_parquet_columns(
    file: File,
    wanted: impl Fn(&str) -> bool,
) -> Result<(DataFrame, Vec<String>), String> {
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut reader = ParquetReader::new(file);
        let names: Vec<String> = reader.schema()?.iter_names().map(|n| n.to_string()).collect();
        let selected = names.iter().filter(|n| wanted(n)).cloned().collect();
        reader.with_columns(Some(selected)).finish().map(|df| (df, names))
    }));
    match read {
        Ok(read) => read.map_err(|e| e.to_string()),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!("the Parquet reader failed ({why})"))
        }
    }
}

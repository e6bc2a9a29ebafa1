//! im2col on the CPU as a candle custom op, with col2im as its backward pass: the input of a
//! square convolution unrolled into a matrix, so that the convolution of a whole batch is one
//! matmul ([`crate::models::cnn::layers::conv2d`]).
//!
//! Layout: input `[B, C, H, W]` (contiguous); columns `[C·k·k, B·Ho·Wo]`, row `c·k·k + di·k + dj`
//! (the order of a `[O, C, k, k]` weight flattened to `[O, C·k·k]`), column `(b·Ho + i)·Wo + j`
//! holding input `(b, c, i·stride + di - padding, j·stride + dj - padding)`, or 0 in the padding.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Below this many elements the copies run on one thread.
const PARALLEL_MIN: usize = 1 << 16;

/// A square convolution's input and how its kernel moves over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Zero padding (all four sides).
    pub padding: usize,
}

impl Geometry {
    /// The geometry of input `dims` (`[B, C, H, W]`); an error when the kernel does not fit.
    pub fn new(dims: &[usize], kernel: usize, stride: usize, padding: usize) -> candle_core::Result<Self> {
        let &[batch, channels, height, width] = dims else {
            candle_core::bail!("im2col: expected an input [B, C, H, W], got {dims:?}");
        };
        if kernel == 0 || stride == 0 {
            candle_core::bail!("im2col: kernel {kernel} and stride {stride} must be positive");
        }
        if height + 2 * padding < kernel || width + 2 * padding < kernel {
            candle_core::bail!(
                "im2col: a {kernel}x{kernel} kernel does not fit a {height}x{width} map padded by {padding}"
            );
        }
        Ok(Self {
            batch,
            channels,
            height,
            width,
            kernel,
            stride,
            padding,
        })
    }

    /// Output height and width.
    pub fn output(&self) -> (usize, usize) {
        let out = |n: usize| (n + 2 * self.padding - self.kernel) / self.stride + 1;
        (out(self.height), out(self.width))
    }

    /// Rows of the column matrix: `C·k·k`.
    pub fn rows(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    /// Columns of the column matrix: `B·Ho·Wo`.
    pub fn columns(&self) -> usize {
        let (ho, wo) = self.output();
        self.batch * ho * wo
    }

    /// The input row (or column) read at output row (or column) `out` with kernel offset
    /// `offset`, if it is not padding; `size` is the input's extent in that direction.
    fn source(&self, out: usize, offset: usize, size: usize) -> Option<usize> {
        (out * self.stride + offset)
            .checked_sub(self.padding)
            .filter(|&v| v < size)
    }

    /// The output columns (of `outputs`) whose kernel offset `offset` reads inside an input of
    /// width `size` rather than its padding: input column `j·stride + offset - padding`. The same
    /// rule gives the output rows for a vertical offset and the input's height.
    fn inside(&self, offset: usize, size: usize, outputs: usize) -> std::ops::Range<usize> {
        let first = self.padding.saturating_sub(offset).div_ceil(self.stride);
        let end = (size + self.padding)
            .checked_sub(offset + 1)
            .map_or(0, |last| last / self.stride + 1)
            .min(outputs);
        first..end.max(first)
    }
}

/// Element types the copies handle.
trait Element: Copy + Default + std::ops::AddAssign + Send + Sync {}
impl Element for f32 {}
impl Element for f64 {}

/// Runs `f` on each `chunk`-sized piece of `data` with its index, in parallel when `data` is large.
fn for_each_chunk<T: Send>(data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if data.len() >= PARALLEL_MIN {
        data.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// The column matrix of contiguous input `x`.
fn unroll<T: Element>(g: &Geometry, x: &[T]) -> Vec<T> {
    let (ho, wo) = g.output();
    let (k, plane) = (g.kernel, g.height * g.width);
    let mut columns = vec![T::default(); g.rows() * g.columns()];
    for_each_chunk(&mut columns, g.columns(), |row, out| {
        let (c, di, dj) = (row / (k * k), row % (k * k) / k, row % k);
        // The output rows and columns that read inside the input (the rest stays 0), the same
        // for every image: found once per row of the column matrix, not per output row.
        let (rows, inside) = (g.inside(di, g.height, ho), g.inside(dj, g.width, wo));
        if inside.is_empty() {
            return;
        }
        let first = inside.start * g.stride + dj - g.padding;
        for b in 0..g.batch {
            let input = &x[(b * g.channels + c) * plane..][..plane];
            for i in rows.clone() {
                let y = i * g.stride + di - g.padding;
                let source = &input[y * g.width + first..];
                let target = &mut out[(b * ho + i) * wo..][inside.clone()];
                // Element loops, not `copy_from_slice`: rows of a small map are a few values,
                // where a call to `memcpy` per row cost more than the copy.
                if g.stride == 1 {
                    target.iter_mut().zip(source).for_each(|(t, &s)| *t = s);
                } else {
                    let sources = source.iter().step_by(g.stride);
                    target.iter_mut().zip(sources).for_each(|(t, &s)| *t = s);
                }
            }
        }
    });
    columns
}

/// The gradient of the input from the gradient of the column matrix (`[C·k·k, B·Ho·Wo]`,
/// contiguous): each column entry added back to the input element it was read from.
fn roll_back<T: Element>(g: &Geometry, columns: &[T]) -> Vec<T> {
    let (ho, wo) = g.output();
    let (k, plane, n_columns) = (g.kernel, g.height * g.width, g.columns());
    let mut input = vec![T::default(); g.batch * g.channels * plane];
    // One task per (image, channel) plane: no two tasks write the same element.
    for_each_chunk(&mut input, plane, |q, target| {
        let (b, c) = (q / g.channels, q % g.channels);
        for offset in 0..k * k {
            let (di, dj) = (offset / k, offset % k);
            let row = &columns[(c * k * k + offset) * n_columns..][..n_columns];
            for i in 0..ho {
                let Some(y) = g.source(i, di, g.height) else { continue };
                let source = &row[(b * ho + i) * wo..][..wo];
                let inside = g.inside(dj, g.width, wo);
                if inside.is_empty() {
                    continue;
                }
                let first = inside.start * g.stride + dj - g.padding;
                let targets = target[y * g.width + first..].iter_mut().step_by(g.stride);
                targets.zip(&source[inside]).for_each(|(t, &v)| *t += v);
            }
        }
    });
    input
}

/// The contiguous values of a CPU tensor, or an error naming `op`.
fn contiguous<'a, T>(values: &'a [T], layout: &Layout, op: &str) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

/// im2col of an input `[B, C, H, W]` (f32 or f64, CPU); see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct Im2Col {
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding.
    pub padding: usize,
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geometry::new(layout.dims(), self.kernel, self.stride, self.padding)?;
        let shape = Shape::from((g.rows(), g.columns()));
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(unroll(&g, contiguous(v, layout, self.name())?)),
            CpuStorage::F64(v) => CpuStorage::F64(unroll(&g, contiguous(v, layout, self.name())?)),
            other => candle_core::bail!("im2col: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let geometry = Geometry::new(arg.dims(), self.kernel, self.stride, self.padding)?;
        grad_res.contiguous()?.apply_op1_no_bwd(&Col2Im(geometry)).map(Some)
    }
}

/// The backward pass of [`Im2Col`]: column-matrix gradient to input gradient.
#[derive(Debug, Clone, Copy)]
struct Col2Im(Geometry);

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.0;
        if layout.dims() != [g.rows(), g.columns()] {
            candle_core::bail!(
                "col2im: expected [{}, {}], got {:?}",
                g.rows(),
                g.columns(),
                layout.dims()
            );
        }
        let shape = Shape::from((g.batch, g.channels, g.height, g.width));
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(roll_back(g, contiguous(v, layout, self.name())?)),
            CpuStorage::F64(v) => CpuStorage::F64(roll_back(g, contiguous(v, layout, self.name())?)),
            other => candle_core::bail!("col2im: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_ranges_agree_with_the_coordinate_rule() {
        for (kernel, stride, padding, width) in [(3, 1, 1, 8), (3, 2, 1, 7), (7, 2, 3, 9), (1, 2, 0, 5), (5, 3, 4, 2)] {
            let g = Geometry::new(&[1, 1, width, width], kernel, stride, padding).unwrap();
            let (_, wo) = g.output();
            for offset in 0..kernel {
                let expected: Vec<usize> = (0..wo).filter(|&j| g.source(j, offset, width).is_some()).collect();
                let inside: Vec<usize> = g.inside(offset, width, wo).collect();
                assert_eq!(
                    inside, expected,
                    "k {kernel} s {stride} p {padding} w {width} offset {offset}"
                );
            }
        }
        assert!(Geometry::new(&[1, 1, 2, 2], 5, 1, 1).is_err());
        assert!(Geometry::new(&[1, 2, 2], 1, 1, 0).is_err());
    }

    #[test]
    fn unrolled_values_follow_the_coordinate_rule() {
        // Kernels larger than the map, padding wider than the kernel, strides that skip columns.
        for (kernel, stride, padding, height, width) in [
            (3, 1, 1, 4, 5),
            (3, 2, 1, 7, 6),
            (5, 1, 2, 1, 1),
            (1, 2, 0, 5, 3),
            (5, 3, 4, 2, 3),
            (2, 1, 3, 1, 2),
        ] {
            let g = Geometry::new(&[2, 3, height, width], kernel, stride, padding).unwrap();
            let x: Vec<f32> = (0..2 * 3 * height * width).map(|v| v as f32 + 1.0).collect();
            let columns = unroll(&g, &x);
            let (ho, wo) = g.output();
            let mut expected = Vec::new();
            for c in 0..3 {
                for (di, dj) in (0..kernel).flat_map(|di| (0..kernel).map(move |dj| (di, dj))) {
                    for b in 0..2 {
                        for (i, j) in (0..ho).flat_map(|i| (0..wo).map(move |j| (i, j))) {
                            let value = match (g.source(i, di, height), g.source(j, dj, width)) {
                                (Some(y), Some(x_)) => x[((b * 3 + c) * height + y) * width + x_],
                                _ => 0.0,
                            };
                            expected.push(value);
                        }
                    }
                }
            }
            assert_eq!(columns, expected, "k {kernel} s {stride} p {padding} {height}x{width}");
        }
    }
}

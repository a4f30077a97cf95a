"""The network as an exported graph holds it: one input, one output, and every size decided inside the graph.

The torch model resizes its 37x37 position-embedding table per patch grid with `F.interpolate(scale_factor=...)`,
cached in Python: a graph traced through that would freeze the grid it was traced at, and runtimes disagree on how
a cubic Resize maps coordinates (ONNX's Resize reads `scales` and `sizes` differently from torch's scale_factor
path). So the resize is written here as plain arithmetic on the grid: for each output row and column, the four
source indices and cubic weights that torch's bicubic kernel uses (A = -0.75, source = (i + 0.5) / scale - 0.5
with scale = (grid + 0.1) / 37, indices clamped at the border), gathered as two small matrices, H' x 37 and
W' x 37, that multiply the table. Any ONNX runtime, OpenVINO or TensorRT runs MatMul, Floor and Equal the same
way, so the graph equals upstream at every grid (tests check several). At the 37x37 grid upstream uses the table
untouched, and the matrices become exact identities there.

The grid is taken as a tensor (a sum of ones over a row of the grid), never as a Python int, so that neither
torch.export nor the TorchScript tracer specialise on the grid they saw.
"""

import torch
from torch import nn

from dav2_cli.model.image_encoder import POS_OFFSET

CUBIC_A = -0.75  # torch's (and OpenCV's) cubic convolution constant


def _cubic_near(distance: torch.Tensor) -> torch.Tensor:
    """Cubic convolution weight for |distance| <= 1."""
    return ((CUBIC_A + 2) * distance - (CUBIC_A + 3)) * distance * distance + 1


def _cubic_far(distance: torch.Tensor) -> torch.Tensor:
    """Cubic convolution weight for 1 < |distance| < 2."""
    return ((CUBIC_A * distance - 5 * CUBIC_A) * distance + 8 * CUBIC_A) * distance - 4 * CUBIC_A


def resize_matrix(grid: int, count_like: torch.Tensor, table_grid: int, both_native: torch.Tensor) -> torch.Tensor:
    """(grid, table_grid) float32: row i holds the cubic weights that make output i of torch's bicubic resize by
    scale_factor (grid + POS_OFFSET) / table_grid. `count_like` is a float32 vector of `grid` elements (its sum is
    the grid as a tensor); `both_native` a bool tensor, true where upstream skips the resize (both sides at
    table_grid), which turns the matrix into the identity."""
    rows = torch.cumsum(torch.ones_like(count_like), 0) - 1
    grid_t = torch.ones_like(count_like).sum()
    source = (rows + 0.5) * (table_grid / (grid_t + POS_OFFSET)) - 0.5
    floor = torch.floor(source)
    t = source - floor
    columns = torch.arange(table_grid, dtype=torch.float32, device=count_like.device)
    weights = (_cubic_far(t + 1), _cubic_near(t), _cubic_near(1 - t), _cubic_far(2 - t))
    matrix = torch.zeros_like(rows)[:, None] + torch.zeros_like(columns)[None, :]
    for offset, weight in zip((-1, 0, 1, 2), weights):
        index = torch.clamp(floor + offset, 0, table_grid - 1)
        matrix = matrix + (index[:, None] == columns[None, :]).to(torch.float32) * weight[:, None]
    identity = (rows[:, None] == columns[None, :]).to(torch.float32)
    return torch.where(both_native, identity, matrix)


class ExportableDepth(nn.Module):
    """A float32 dav2 model with its position embedding computed in-graph: (N,3,H,W) float32 → (N,H,W) float32,
    the model's `signed_depth` (a sky-head model's sky pixels negated: model/head.py).

    Works for Depth-Anything V2 models (`DepthAnythingV2.signed_depth` takes the embedding as its second argument).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        encoder, patch = self.model.image_encoder, self.model.config.patch_size
        g = encoder.table_grid
        # one row and one column of the patch grid, from the image itself (stride = patch, like patch embedding)
        column_h = image[0, 0, ::patch, 0]
        row_w = image[0, 0, 0, ::patch]
        grid_h, grid_w = torch.ones_like(column_h).sum(), torch.ones_like(row_w).sum()
        both_native = (grid_h == g) & (grid_w == g)
        rows_hg = resize_matrix(column_h.shape[0], column_h, g, both_native)
        cols_wg = resize_matrix(row_w.shape[0], row_w, g, both_native)
        table = encoder.pos_embed.float()
        table_ggc = table[0, 1:].reshape(g, g, -1)
        width = table_ggc.shape[-1]
        rows_hgc = torch.matmul(rows_hg, table_ggc.reshape(g, g * width)).reshape(-1, g, width)
        patch_hwc = torch.matmul(rows_hgc.permute(0, 2, 1), cols_wg.transpose(0, 1)).permute(0, 2, 1)
        position_1nc = torch.cat((table[:, :1], patch_hwc.reshape(1, -1, width)), dim=1)
        return self.model.signed_depth(image, position_1nc)

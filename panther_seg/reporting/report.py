"""``OUT/report/``: a static report of a run that opens from disk (file://), with no server and no
network. ``index.html`` is a sortable table of the cases, those flagged for review first, each
with a thumbnail and a link to ``cases/<case>.html``: the preview picture, the measurements, and
an interactive viewer (NiiVue, vendored) of the scan with the masks, whose volumes come in
``cases/<case>.js`` (``viewer``). The folder is written whole or not at all."""
from __future__ import annotations

import html
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import SimpleITK as sitk
from PIL import Image

from ..errors import InputError
from ..io.files import atomic_path
from .preview import PREVIEW_SUFFIX, panel, render_preview, VIEWS, display_spacing, focus_point, window_of, write_png
from ..overlay import PANCREAS_RGB, REFERENCE_RGB, TUMOUR_RGB
from .records import ReportCase
from .viewer import CASE_GLOBAL, NIIVUE_FILE, NIIVUE_LICENCE, VENDOR_DIR, case_script

log = logging.getLogger("panther_seg")

REPORT_DIR = "report"
CASES_DIR = "cases"
THUMBNAIL_PX = 128
DEMONSTRATION_BANNER = ("DEMONSTRATION MODEL: trained on synthetic data, not a model for real scans; "
                        "these results show what the software does, not what a real model would find.")
# the challenge's metrics a report shows with --reference (evaluation.metrics.CaseMetrics' fields)
REFERENCE_COLUMNS = (("dice", "Dice", 3), ("surface_dice", "surface Dice", 3), ("hd95_mm", "HD95 mm", 1),
                     ("masd_mm", "MASD mm", 2))

STYLE = """
body { font-family: sans-serif; margin: 1.5em; background: #fafafa; color: #111; }
.demo { background: #ffb347; border: 2px solid #c60; padding: .6em; font-weight: bold; }
table { border-collapse: collapse; }
th, td { border: 1px solid #bbb; padding: .3em .5em; text-align: right; vertical-align: middle; }
th { background: #e4e4e4; cursor: pointer; user-select: none; }
td.name, td.status { text-align: left; }
tr.review td { background: #ffe0e0; }
tr.problem td { background: #eee; color: #666; }
img.thumb { width: 128px; height: auto; display: block; }
img.preview { max-width: 100%; }
#viewer-box { width: 960px; height: 640px; background: #000; }
#viewer { width: 100%; height: 100%; display: block; }
"""

SORT_SCRIPT = """
document.querySelectorAll('th[data-sort]').forEach((th, column) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const ascending = th.dataset.order !== 'asc';
  th.dataset.order = ascending ? 'asc' : 'desc';
  const key = row => { const v = row.cells[column].dataset.value; const n = parseFloat(v); return isNaN(n) ? v : n; };
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b);
    const c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
    return ascending ? c : -c;
  });
  rows.forEach(r => body.appendChild(r));
}));
"""

VIEWER_SCRIPT = """
(async () => {
  const data = window.%(global)s;
  const nv = new niivue.Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: true, isColorbar: false, isRadiologicalConvention: true,
                                   crosshairColor: [1, 0.85, 0, 1] });
  await nv.attachTo('viewer');
  const volumes = [{ name: 'image', colormap: 'gray', opacity: 1 },
                   { name: 'pancreas', colormap: 'blue', opacity: 0.45 },
                   { name: 'reference', colormap: 'green', opacity: 0.45 },
                   { name: 'tumour', colormap: 'red', opacity: 0.6 }];
  for (const v of volumes) {
    if (!data[v.name]) continue;
    const options = { base64: data[v.name], name: v.name + '.nii.gz', colormap: v.colormap, opacity: v.opacity };
    if (v.name !== 'image') { options.cal_min = 0.5; options.cal_max = 1; } else { options.cal_min = 0; options.cal_max = 255; }
    nv.addVolume(await niivue.NVImage.loadFromBase64(options));
  }
  nv.setSliceType(nv.sliceTypeMultiplanar);
  const point = %(focus)s;
  if (point) { nv.scene.crosshairPos = nv.mm2frac([-point[0], -point[1], point[2]]); nv.updateGLVolume(); }  // LPS to NiiVue's RAS
  document.body.dataset.viewer = 'ready';
})().catch(error => { console.error('viewer: ' + error); document.body.dataset.viewer = 'failed'; });
"""


@dataclass(frozen=True)
class Row:
    """What the table shows of one case, and the sort keys behind it."""

    case: ReportCase
    review: bool
    problem: bool


def _fmt(value: float | None, digits: int, unit: str = "") -> tuple[str, str]:
    """(shown text, sort key) of a number; a missing one sorts last."""
    if value is None:
        return "–", "1e300"
    return f"{value:.{digits}f}{unit}", repr(float(value))


def _cell(text: str, key: str | None = None, cls: str = "") -> str:
    key_attr = f' data-value="{html.escape(key if key is not None else text)}"'
    cls_attr = f' class="{cls}"' if cls else ""
    return f"<td{cls_attr}{key_attr}>{html.escape(text)}</td>"


def confidence_text(case: ReportCase) -> tuple[str, str]:
    c = case.confidence
    if c is None:
        return "not recorded", "2"
    if not c.computed:
        return "not computed (no mirroring)", "2"
    text = f"Dice {c.mean_dice:.2f} (min {c.min_dice:.2f})" if c.mean_dice is not None and c.min_dice is not None else "computed"
    if c.review:
        text += " REVIEW"
    return text, repr(float(c.min_dice if c.min_dice is not None else 0.0))


def href(name: str) -> str:
    """A case page's link, its name quoted for a URL."""
    return f"{CASES_DIR}/{quote(name)}.html"


def table_row(case: ReportCase, metrics: dict[str, float] | None, reference: bool, thumbnail: str | None) -> str:
    m = case.measurements
    review = bool(case.confidence and case.confidence.review)
    status = case.status if case.status != "ok" else ("REVIEW" if review else "ok")
    if case.error:
        status += f": {case.error}"
    volume = m.tumour_volume_ml if m is not None else case.tumour_ml
    cells = [
        f'<td class="name" data-value="{html.escape(case.name)}"><a href="{html.escape(href(case.name))}">'
        f"{html.escape(case.name)}</a></td>",
        f'<td data-value="{html.escape(case.name)}">' + (f'<a href="{html.escape(href(case.name))}">'
                                                        f'<img class="thumb" src="{html.escape(quote(thumbnail))}" alt="thumbnail of {html.escape(case.name)}"></a>'
                                                        if thumbnail else "") + "</td>",
        _cell(status, cls="status"),
        _cell(*_fmt(volume, 2)),
        _cell(*((str(len(m.lesions)), str(len(m.lesions))) if m is not None else ("–", "1e300"))),
        _cell(*_fmt(m.longest_diameter_mm if m is not None else None, 1)),
        _cell((m.size_category or "–") if m is not None else "–"),
        _cell(*confidence_text(case)),
        _cell(*_fmt(case.seconds, 1)),
    ]
    if reference:
        for key, _, digits in REFERENCE_COLUMNS:
            cells.append(_cell(*_fmt(None if metrics is None else metrics.get(key), digits)))
    classes = "review" if review else ("problem" if case.status != "ok" else "")
    return f'<tr class="{classes}" data-case="{html.escape(case.name)}">' + "".join(cells) + "</tr>"


def ordered(cases: Sequence[ReportCase]) -> list[ReportCase]:
    """Flagged for review first, then refused or failed, then the rest; by name within each."""
    def rank(case: ReportCase) -> tuple[int, str]:
        if case.confidence is not None and case.confidence.review:
            return 0, case.name
        return (1 if case.status != "ok" else 2), case.name
    return sorted(cases, key=rank)


def page(title: str, body: str, demonstration: bool, scripts: Sequence[str] = (), inline: str = "") -> str:
    banner = f'<p class="demo">{html.escape(DEMONSTRATION_BANNER)}</p>' if demonstration else ""
    tags = "".join(f'<script src="{html.escape(s)}"></script>' for s in scripts)
    inline_tag = f"<script>{inline}</script>" if inline else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{banner}{body}{tags}{inline_tag}</body></html>\n")


def index_html(cases: Sequence[ReportCase], metrics: dict[str, dict[str, float]], thumbnails: dict[str, str],
               reference: bool, title: str) -> str:
    headers = ["case", "preview", "status", "tumour mL", "lesions", "longest diameter mm", "size", "confidence", "time s"]
    if reference:
        headers += [label for _, label, _ in REFERENCE_COLUMNS]
    head = "".join(f'<th data-sort="{i}">{html.escape(h)}</th>' for i, h in enumerate(headers))
    rows = "\n".join(table_row(c, metrics.get(c.name), reference, thumbnails.get(c.name)) for c in ordered(cases))
    flagged = sum(bool(c.confidence and c.confidence.review) for c in cases)
    problems = sum(c.status != "ok" for c in cases)
    body = (f"<h1>{html.escape(title)}</h1><p>{len(cases)} cases: {flagged} flagged for review, {problems} refused or "
            f"failed. Flagged cases come first; click a column's title to sort by it. Outlines: tumour red, pancreas "
            f"blue{', reference green' if reference else ''}.</p>"
            f'<table id="cases"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>')
    return page(title, body, any(c.demonstration for c in cases), inline=SORT_SCRIPT)


def _lesion_rows(case: ReportCase) -> str:
    m = case.measurements
    if m is None or not m.lesions:
        return ""
    rows = "".join(
        f"<tr><td>{i}</td><td>{l.volume_ml:.2f}</td><td>{l.longest_in_plane_mm:.1f}</td><td>{l.perpendicular_in_plane_mm:.1f}</td>"
        f"<td>{l.longest_3d_mm:.1f}</td><td>{html.escape(l.size_category)}</td>"
        f"<td>({', '.join(f'{v:.1f}' for v in l.centroid_lps_mm)})</td></tr>"
        for i, l in enumerate(m.lesions, 1)
    )
    return ("<h2>Lesions</h2><table><thead><tr><th>#</th><th>mL</th><th>longest in plane mm</th><th>perpendicular mm</th>"
            f"<th>longest 3D mm</th><th>size</th><th>centre LPS mm</th></tr></thead><tbody>{rows}</tbody></table>")


def case_html(case: ReportCase, metrics: dict[str, float] | None, preview: str | None, viewer: bool,
              focus: Sequence[float] | None) -> str:
    facts = [("status", case.status + (f": {case.error}" if case.error else "")),
             ("input", str(case.image or "–")), ("confidence", confidence_text(case)[0]),
             ("time", _fmt(case.seconds, 1, " s")[0])]
    m = case.measurements
    if m is not None:
        facts += [("tumour volume", f"{m.tumour_volume_ml:.2f} mL"), ("lesions", str(len(m.lesions))),
                  ("longest diameter", _fmt(m.longest_diameter_mm, 1, " mm")[0]), ("size category", m.size_category or "–"),
                  ("pancreas volume", _fmt(m.pancreas_volume_ml, 1, " mL")[0])]
    if case.confidence is not None and case.confidence.reason:
        facts.append(("confidence note", case.confidence.reason))
    if metrics is not None:
        facts += [(label, _fmt(metrics.get(key), digits)[0]) for key, label, digits in REFERENCE_COLUMNS]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td class=\"name\">{html.escape(v)}</td></tr>" for k, v in facts)
    body = (f'<p><a href="../index.html">all cases</a></p><h1>{html.escape(case.name)}</h1>'
            f'<table id="facts">{table}</table>{_lesion_rows(case)}')
    if preview:
        body += f'<h2>Preview</h2><img class="preview" src="{html.escape(quote(preview))}" alt="preview of {html.escape(case.name)}">'
    scripts: list[str] = []
    inline = ""
    if viewer:
        body += ('<h2>Viewer</h2><p>Scroll to move through slices, click to move the crosshair, right-drag to '
                 'change the window. Tumour red, pancreas blue, reference green.</p>'
                 '<div id="viewer-box"><canvas id="viewer"></canvas></div>')
        scripts = [f"../{NIIVUE_FILE}", f"{quote(case.name)}.js"]
        inline = VIEWER_SCRIPT % {"global": CASE_GLOBAL, "focus": json.dumps(list(focus) if focus else None)}
    return page(f"{case.name}: panther-seg", body, case.demonstration, scripts, inline)


def read_volume(path: Path) -> sitk.Image:
    """A run's input or output, read back for the pictures (the run checked it already)."""
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError(path, "cannot be read as an image") from None


def _read(path: Path | None) -> sitk.Image | None:
    """A mask as 0/1 bytes (what the pictures and the viewer take), or None."""
    if path is None or not Path(path).is_file():
        return None
    return sitk.Cast(read_volume(Path(path)) > 0, sitk.sitkUInt8)


def read_scan(path: Path) -> sitk.Image:
    """A case's input: an image file, or a DICOM series folder (with the DICOM extra)."""
    if Path(path).is_dir():
        try:
            from ..io.dicom import read_dicom_series
        except ImportError:
            raise InputError(path, "a DICOM series input needs pydicom and highdicom for its pictures") from None
        return read_dicom_series(Path(path)).image
    return read_volume(Path(path))


def case_images(case: ReportCase) -> tuple[sitk.Image, sitk.Image, sitk.Image | None] | None:
    """The scan and the masks of a case, or None where the report cannot show them (a case not
    segmented; a DICOM SEG output, which is not read back)."""
    if case.status != "ok" or case.image is None or case.tumour is None or not Path(case.image).exists():
        return None
    if Path(case.tumour).suffix.lower() == ".dcm":
        return None
    tumour = _read(case.tumour)
    if tumour is None:
        return None
    return read_scan(Path(case.image)), tumour, _read(case.pancreas)


def thumbnail(image: sitk.Image, tumour: sitk.Image, pancreas: sitk.Image | None, reference: sitk.Image | None,
              point: Sequence[float], window: tuple[float, float]) -> Image.Image:
    """The axial view of the preview, small (``image`` as float32)."""
    masks = [(pancreas, PANCREAS_RGB), (reference, REFERENCE_RGB), (tumour, TUMOUR_RGB)]
    picture = Image.fromarray(panel(image, window, masks, VIEWS[0], point, display_spacing(image)))
    picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    return picture


def write_case_files(folder: Path, out_dir: Path, case: ReportCase, reference: sitk.Image | None) -> tuple[str | None, str | None, bool, Any]:
    """A case's picture, thumbnail and viewer volumes in ``folder`` (the report being written);
    the preview beside the masks is reused unless a reference must be drawn on it."""
    loaded = case_images(case)
    if loaded is None:
        return None, None, False, None
    image, tumour, pancreas = loaded
    focus = focus_point(image, tumour, pancreas, case.measurements)
    window = window_of(image)
    scan = sitk.Cast(image, sitk.sitkFloat32)
    cases = folder / CASES_DIR
    preview_name = f"{case.name}{PREVIEW_SUFFIX}"
    existing = Path(out_dir) / preview_name
    if reference is None and existing.is_file():
        shutil.copyfile(existing, cases / preview_name)
    else:
        render_preview(scan, tumour, pancreas, case.measurements, case.confidence, case.name,
                       case.demonstration, reference, focus, window).save(cases / preview_name, format="PNG")
    thumb_name = f"{case.name}_thumbnail.png"
    thumbnail(scan, tumour, pancreas, reference, focus[0], window).save(cases / thumb_name, format="PNG")
    masks = {"tumour": tumour, "pancreas": pancreas, "reference": reference}
    (cases / f"{case.name}.js").write_text(case_script(image, window, masks))
    return preview_name, f"{CASES_DIR}/{thumb_name}", True, focus[0]


def write_report(out_dir: Path, cases: Sequence[ReportCase], metrics: dict[str, dict[str, float]] | None = None,
                 references: dict[str, Path] | None = None, title: str = "panther-seg report") -> Path:
    """``out_dir/report/`` for ``cases``; ``metrics`` and ``references`` (by case) add the
    challenge's metrics and the reference's outline. Returns the index's path."""
    out_dir = Path(out_dir)
    if not cases:
        raise InputError(out_dir, "no cases to report (no <case>_statistics.json, no manifest.csv)")
    metrics = metrics or {}
    references = references or {}
    thumbnails: dict[str, str] = {}
    with atomic_path(out_dir / REPORT_DIR, directory=True) as folder:
        (folder / CASES_DIR).mkdir()
        shutil.copyfile(VENDOR_DIR / NIIVUE_FILE, folder / NIIVUE_FILE)
        shutil.copyfile(VENDOR_DIR / NIIVUE_LICENCE, folder / NIIVUE_LICENCE)
        for case in cases:
            reference = _read(references.get(case.name))
            try:
                preview, thumb, viewer, focus = write_case_files(folder, out_dir, case, reference)
            except InputError as e:
                log.warning("WARNING: report: %s: no pictures (%s)", case.name, e)
                preview, thumb, viewer, focus = None, None, False, None
            if thumb:
                thumbnails[case.name] = thumb
            (folder / CASES_DIR / f"{case.name}.html").write_text(
                case_html(case, metrics.get(case.name), preview, viewer, focus))
        (folder / "index.html").write_text(index_html(cases, metrics, thumbnails, bool(references or metrics), title))
    return out_dir / REPORT_DIR / "index.html"


def write_previews(out_dir: Path, cases: Sequence[ReportCase]) -> list[Path]:
    """``<case>_preview.png`` beside each case's masks (``--preview``)."""
    written = []
    for case in cases:
        loaded = case_images(case)
        if loaded is None:
            continue
        image, tumour, pancreas = loaded
        path = Path(out_dir) / f"{case.name}{PREVIEW_SUFFIX}"
        write_png(render_preview(image, tumour, pancreas, case.measurements, case.confidence, case.name,
                                 case.demonstration), path)
        written.append(path)
    return written

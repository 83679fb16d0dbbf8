// Where the results lie on the sky: an Aitoff projection drawn as SVG from the rows' ra and
// dec (RA increasing to the left, as on the sky); clicking a point highlights its row.

const SVG = "http://www.w3.org/2000/svg";
const W = 360;
const H = 180;

// (ra, dec) in degrees -> (x, y) in the drawing.
function aitoff(ra, dec) {
  const lon = ((((ra + 180) % 360) + 360) % 360 - 180) * Math.PI / 180;
  const lat = dec * Math.PI / 180;
  const alpha = Math.acos(Math.cos(lat) * Math.cos(lon / 2));
  const sinc = alpha === 0 ? 1 : Math.sin(alpha) / alpha;
  const x = (2 * Math.cos(lat) * Math.sin(lon / 2)) / sinc;
  const y = Math.sin(lat) / sinc;
  return [W / 2 - (x / Math.PI) * (W / 2 - 2), H / 2 - (y / (Math.PI / 2)) * (H / 2 - 2)];
}

function element(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function line(points, className) {
  return element("polyline", { points: points.map((p) => p.map((v) => v.toFixed(1)).join(",")).join(" "),
    class: className });
}

function grid() {
  const lines = [];
  for (let ra = 0; ra < 360; ra += 60) {
    const points = [];
    for (let dec = -90; dec <= 90; dec += 5) points.push(aitoff(ra === 180 ? 179.999 : ra, dec));
    lines.push(line(points, "grid"));
  }
  for (let dec = -60; dec <= 60; dec += 30) {
    const points = [];
    for (let ra = -179.999; ra <= 180; ra += 5) points.push(aitoff(ra, dec));
    lines.push(line(points, "grid"));
  }
  const edge = [];
  for (let dec = -90; dec <= 90; dec += 5) edge.push(aitoff(180.001, dec));
  for (let dec = 90; dec >= -90; dec -= 5) edge.push(aitoff(179.999, dec));
  lines.push(line(edge, "edge"));
  return lines;
}

export function draw(figure, rows, table) {
  const svg = element("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "where the results lie on the sky" });
  svg.append(...grid());
  let shown = 0;
  for (const row of rows) {
    if (typeof row.ra !== "number" || typeof row.dec !== "number") continue;
    const [x, y] = aitoff(row.ra, row.dec);
    const dot = element("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 2.5, class: "point", "data-id": row.id,
      tabindex: 0 });
    const title = element("title", {});
    title.textContent = `${row.object || row.path || row.id} (${row.ra.toFixed(3)}, ${row.dec.toFixed(3)})`;
    dot.append(title);
    const pick = () => {
      for (const marked of document.querySelectorAll(".highlight")) marked.classList.remove("highlight");
      dot.classList.add("highlight");
      const tr = table.querySelector(`tr[data-id="${row.id}"]`);
      tr.classList.add("highlight");
      tr.scrollIntoView({ block: "nearest" });
    };
    dot.addEventListener("click", pick);
    dot.addEventListener("keydown", (event) => { if (event.key === "Enter") pick(); });
    svg.append(dot);
    shown += 1;
  }
  figure.querySelector("svg")?.remove();
  figure.prepend(svg);
  figure.querySelector("figcaption").textContent = shown
    ? `${shown} of this page's files on the sky (Aitoff; RA 0h in the middle, increasing to the left)`
    : "No positions on this page (add the ra and dec columns)";
}

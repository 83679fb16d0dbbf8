// Preview thumbnails: an <img> per row, loaded when it scrolls into view. With a pasted
// token the image is fetched with the Bearer header (an <img src> cannot carry one).

import { request, token } from "./api.js";

const SIZE = 96;
let watcher = null;

function load(img) {
  request(img.dataset.src)
    .then((response) => response.blob())
    .then((blob) => { img.src = URL.createObjectURL(blob); })
    .catch(() => missing(img));
}

function missing(img) {
  img.replaceWith(Object.assign(document.createElement("span"), { className: "no-preview", textContent: "no preview" }));
}

export function cell(row) {
  const td = document.createElement("td");
  td.className = "preview";
  const source = `/api/v1/files/${row.id}/preview?size=${SIZE}`;
  const img = Object.assign(document.createElement("img"), { alt: `preview of ${row.path || row.id}`,
    width: SIZE, height: SIZE, loading: "lazy", decoding: "async" });
  img.addEventListener("error", () => missing(img));
  if (token()) {
    img.dataset.src = source;
    watcher ??= new IntersectionObserver((entries) => {
      for (const entry of entries.filter((e) => e.isIntersecting)) {
        watcher.unobserve(entry.target);
        load(entry.target);
      }
    }, { rootMargin: "200px" });
    watcher.observe(img);
  } else {
    img.src = source;
  }
  const large = Object.assign(document.createElement("a"), { href: `/api/v1/files/${row.id}/preview?size=1024`,
    target: "_blank", rel: "noopener" });
  large.append(img);
  td.append(token() ? img : large);
  return td;
}

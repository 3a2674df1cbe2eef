// Tables on a narrow screen. A number never breaks inside (6.5e-07 stays on one line). A table wider
// than the page is shown row by row, each value under its column's name, instead of scrolling columns
// (the results among them) out of view; on a wide screen it is a table again.
(function () {
  const NUMBER = /\S*\d\S*/g;

  function keepNumbersWhole(cell) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    const nodes = [];
    for (let node; (node = walker.nextNode());) if (/\d/.test(node.data)) nodes.push(node);
    for (const node of nodes) {
      const parts = document.createDocumentFragment();
      let last = 0;
      for (const m of node.data.matchAll(NUMBER)) {
        parts.append(node.data.slice(last, m.index));
        const whole = document.createElement("span");
        whole.className = "memrnn-number";
        whole.textContent = m[0];
        parts.append(whole);
        last = m.index + m[0].length;
      }
      parts.append(node.data.slice(last));
      node.replaceWith(parts);
    }
  }

  function label(table) {
    const names = [...table.querySelectorAll("thead th")].map(th => th.innerText.trim());
    for (const row of table.querySelectorAll("tbody tr"))
      [...row.children].forEach((cell, i) => { if (names[i]) cell.dataset.label = names[i]; });
  }

  function fit() {
    // the text column's edge (the page's main element also holds the contents sidebar on a wide screen)
    const right = document.querySelector("article").getBoundingClientRect().right;
    for (const table of document.querySelectorAll("article table")) {
      table.classList.remove("memrnn-stacked");
      const box = table.getBoundingClientRect();
      if (Math.max(table.scrollWidth, box.width) > right - box.left + 1) table.classList.add("memrnn-stacked");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const table of document.querySelectorAll("article table")) {
      label(table);
      table.querySelectorAll("td, th").forEach(keepNumbersWhole);
    }
    fit();
    window.addEventListener("resize", fit);
  });
})();

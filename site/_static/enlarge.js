// Click a figure on a notebook page to see it larger (up to 1.75x, within the window); click again or
// press Escape to close. Figures are drawn to fit the text column (tlhelpers/viz.py COLUMN_WIDTH).
document.addEventListener("DOMContentLoaded", () => {
  const close = () => document.querySelectorAll(".tl-enlarged").forEach((e) => e.remove());
  document.querySelectorAll("div.cell_output img").forEach((img) => {
    img.classList.add("tl-zoomable");
    img.title = "Click to enlarge";
    img.addEventListener("click", () => {
      close();
      const box = document.createElement("div");
      box.className = "tl-enlarged";
      const big = document.createElement("img");
      big.src = img.src;
      big.alt = img.alt;
      const width = Math.min(window.innerWidth * 0.95, img.naturalWidth * 1.75);
      big.style.width = `${Math.max(width, img.clientWidth)}px`;
      box.appendChild(big);
      box.addEventListener("click", close);
      document.body.appendChild(box);
    });
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") close();
  });
});

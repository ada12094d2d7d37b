namespace VirtioSharp.Dma;

/// <summary>
/// Allocates runs of 4 KiB IOVA pages from an aperture with a first-fit bitmap and a rotating hint (so freed IOVAs are
/// not reused at once, which makes stale-IOTLB bugs visible instead of aliased). Not thread-safe; callers lock.
/// </summary>
internal sealed class IovaAllocator
{
    private const int PageShift = 12;
    private readonly ulong _base;
    private readonly ulong[] _bitmap;
    private readonly int _pages;
    private int _hint;

    public IovaAllocator(ulong apertureBase, ulong apertureSize)
    {
        _base = apertureBase;
        _pages = (int)Math.Min(apertureSize >> PageShift, int.MaxValue - 64);
        _bitmap = new ulong[(_pages + 63) / 64];
    }

    public int UsedPages { get; private set; }

    private bool Used(int p) => (_bitmap[p >> 6] & (1UL << (p & 63))) != 0;

    public bool TryAllocate(int pages, out ulong iova)
    {
        iova = 0;
        if (pages <= 0 || pages > _pages) return false;
        if (TryFit(_hint, _pages, pages, out int p) || TryFit(0, Math.Min(_hint + pages, _pages), pages, out p))
        {
            for (int i = 0; i < pages; i++) _bitmap[(p + i) >> 6] |= 1UL << ((p + i) & 63);
            UsedPages += pages;
            _hint = p + pages >= _pages ? 0 : p + pages;
            iova = _base + ((ulong)p << PageShift);
            return true;
        }
        return false;
    }

    private bool TryFit(int start, int limit, int need, out int found)
    {
        for (int p = start; p + need <= limit;)
        {
            int run = 0;
            while (run < need && !Used(p + run)) run++;
            if (run == need) { found = p; return true; }
            p += run + 1;
        }
        found = -1;
        return false;
    }

    public void Free(ulong iova, int pages)
    {
        int first = (int)((iova - _base) >> PageShift);
        if (iova < _base || first + pages > _pages) throw new ArgumentOutOfRangeException(nameof(iova), $"IOVA 0x{iova:x} is outside the aperture");
        for (int i = 0; i < pages; i++)
        {
            int p = first + i;
            if (!Used(p)) throw new InvalidOperationException($"IOVA page 0x{_base + ((ulong)p << PageShift):x} freed twice");
            _bitmap[p >> 6] &= ~(1UL << (p & 63));
        }
        UsedPages -= pages;
    }
}

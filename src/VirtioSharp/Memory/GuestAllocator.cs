namespace VirtioSharp.Memory;

/// <summary>
/// Page allocator over a range of guest-physical memory: what the guest kernel's page allocator is to its drivers.
/// Used for rings (coherent allocations), bounce pools and test buffers. Not a hot path.
/// </summary>
public sealed class GuestAllocator
{
    /// <summary>Allocation granule, in bytes.</summary>
    public const ulong PageSize = 4096;
    private readonly ulong _base;
    private readonly ulong[] _bitmap;
    private readonly int _pages;
    private int _hint;
    private readonly object _lock = new();

    /// <summary>An allocator over [<paramref name="baseGpa"/>, +<paramref name="size"/>); <paramref name="baseGpa"/> must be page aligned.</summary>
    public GuestAllocator(ulong baseGpa, ulong size)
    {
        if ((baseGpa & (PageSize - 1)) != 0) throw new ArgumentException("allocator base must be page aligned", nameof(baseGpa));
        _base = baseGpa;
        _pages = checked((int)(size / PageSize));
        _bitmap = new ulong[(_pages + 63) / 64];
    }

    /// <summary>First guest-physical address managed.</summary>
    public ulong Base => _base;
    /// <summary>Bytes managed (whole pages).</summary>
    public ulong Size => (ulong)_pages * PageSize;
    /// <summary>Pages currently allocated.</summary>
    public int UsedPages { get; private set; }
    /// <summary>Pages currently free.</summary>
    public int FreePages => _pages - UsedPages;

    private bool IsUsed(int p) => (_bitmap[p >> 6] & (1UL << (p & 63))) != 0;
    private void Set(int p, bool used)
    {
        if (used) _bitmap[p >> 6] |= 1UL << (p & 63);
        else _bitmap[p >> 6] &= ~(1UL << (p & 63));
    }

    /// <summary>Allocates whole pages covering <paramref name="bytes"/>; <paramref name="alignPages"/> a power of two.</summary>
    public bool TryAllocate(ulong bytes, out ulong gpa, int alignPages = 1)
    {
        gpa = 0;
        if (bytes == 0 || alignPages <= 0 || (alignPages & (alignPages - 1)) != 0) return false;
        ulong pagesNeeded = (bytes + PageSize - 1) / PageSize;
        if (pagesNeeded > (ulong)_pages) return false;
        int need = (int)pagesNeeded;
        lock (_lock)
        {
            // First fit from the hint, then from the start.
            if (TryFit(AlignUp(_hint, alignPages), _pages, need, alignPages, out int p) ||
                TryFit(0, Math.Min(_hint + need, _pages), need, alignPages, out p))
            {
                for (int i = 0; i < need; i++) Set(p + i, true);
                UsedPages += need;
                _hint = p + need;
                gpa = _base + (ulong)p * PageSize;
                return true;
            }
        }
        return false;
    }

    /// <summary>Allocates <paramref name="bytes"/> rounded up to pages, aligned to <paramref name="alignPages"/> pages; throws when out of memory.</summary>
    public ulong Allocate(ulong bytes, int alignPages = 1) =>
        TryAllocate(bytes, out ulong gpa, alignPages) ? gpa
            : throw new InsufficientMemoryException($"guest allocator out of memory for {bytes} bytes ({UsedPages}/{_pages} pages used)");

    /// <summary>Frees an allocation made by <see cref="Allocate"/> (same address and size).</summary>
    public void Free(ulong gpa, ulong bytes)
    {
        if (gpa < _base || ((gpa - _base) & (PageSize - 1)) != 0)
            throw new ArgumentException($"0x{gpa:x} was not returned by this allocator", nameof(gpa));
        int first = (int)((gpa - _base) / PageSize);
        int count = (int)((bytes + PageSize - 1) / PageSize);
        if (first + count > _pages) throw new ArgumentOutOfRangeException(nameof(bytes));
        lock (_lock)
        {
            for (int i = 0; i < count; i++)
            {
                if (!IsUsed(first + i)) throw new InvalidOperationException($"double free of guest page 0x{_base + (ulong)(first + i) * PageSize:x}");
                Set(first + i, false);
            }
            UsedPages -= count;
            if (first < _hint) _hint = first;
        }
    }

    private bool TryFit(int start, int limit, int need, int align, out int found)
    {
        for (int p = start; p + need <= limit;)
        {
            int run = 0;
            while (run < need && !IsUsed(p + run)) run++;
            if (run == need) { found = p; return true; }
            p = AlignUp(p + run + 1, align);
        }
        found = -1;
        return false;
    }

    private static int AlignUp(int v, int a) => (v + a - 1) & ~(a - 1);
}

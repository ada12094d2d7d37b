namespace VirtioSharp.Memory;

/// <summary>
/// The dirty-page log of a live migration (vhost-user.rst "Migration"): one bit per 4 KiB page of guest-physical address,
/// bit <c>page % 8</c> of byte <c>page / 8</c>, set atomically because the front-end reads and clears the log while
/// devices write. Devices never touch it: the address space marks what it writes (<see cref="RamPort"/>) and the queue
/// marks the buffers of every chain it uses (zero-copy I/O wrote them without <see cref="IDeviceMemory.Write"/>).
/// While logging is off a write costs one field test.
/// </summary>
public sealed unsafe class DirtyLog
{
    /// <summary>log2 of the page one bit covers (VHOST_LOG_PAGE, 0x1000).</summary>
    public const int PageShift = 12;

    private byte* _bitmap;
    private ulong _bytes;
    private bool _enabled;
    private volatile bool _active;
    private long _pagesMarked;
    private long _outOfRange;

    /// <summary>True while writes are logged: enabled (VHOST_F_LOG_ALL) and a bitmap attached.</summary>
    public bool Active => _active;

    /// <summary>Bytes of the attached bitmap (0: none); it covers guest-physical addresses below <c>Bytes × 8 × 4096</c>.</summary>
    public ulong Bytes => _bytes;

    /// <summary>Bits this log turned from 0 to 1: pages found clean and marked dirty (a page the front-end cleared and that is written again counts again).</summary>
    public long PagesMarked => Interlocked.Read(ref _pagesMarked);

    /// <summary>Pages written beyond the bitmap's end: not marked (nothing outside the bitmap is touched), counted so the loss is visible.</summary>
    public long OutOfRange => Interlocked.Read(ref _outOfRange);

    /// <summary>
    /// Installs the bitmap at <paramref name="bitmap"/> (where guest-physical address 0 is logged), <paramref name="bytes"/>
    /// long, replacing any previous one. The 8-byte aligned word around each bitmap byte must be accessible (the bitmap
    /// lies in a mapping that starts and ends on page boundaries). The caller guarantees no write is being logged
    /// meanwhile (vhost-user pauses the rings) and keeps the memory valid until it detaches or attaches another.
    /// </summary>
    public void Attach(nint bitmap, ulong bytes)
    {
        if (bitmap == 0 || bytes == 0) throw new ArgumentException("a dirty log needs a non-empty bitmap; call Detach to remove it");
        _bitmap = (byte*)bitmap;
        _bytes = bytes;
        _active = _enabled;
    }

    /// <summary>Removes the bitmap (nothing is logged until another is attached). Same rule as <see cref="Attach"/>.</summary>
    public void Detach()
    {
        _active = false;
        _bitmap = null;
        _bytes = 0;
    }

    /// <summary>Turns logging on or off (VHOST_F_LOG_ALL); it is active only while a bitmap is attached.</summary>
    public bool Enabled
    {
        get => _enabled;
        set
        {
            _enabled = value;
            _active = value && _bitmap != null;
        }
    }

    /// <summary>
    /// Marks every page of guest-physical [<paramref name="gpa"/>, <paramref name="gpa"/> + <paramref name="len"/>) dirty
    /// if logging is active. Pages past the bitmap are counted in <see cref="OutOfRange"/>, never written.
    /// </summary>
    public void Mark(ulong gpa, ulong len)
    {
        byte* log = _bitmap;
        ulong bytes = _bytes;
        if (len == 0 || log == null || !_active) return;
        ulong end = gpa + (len - 1);
        ulong first = gpa >> PageShift;
        ulong last = end < gpa ? ulong.MaxValue >> PageShift : end >> PageShift;
        for (ulong page = first; ; page++)
        {
            ulong index = page >> 3;
            if (index >= bytes)
            {
                Interlocked.Add(ref _outOfRange, (long)Math.Min(last - page + 1, long.MaxValue));
                return;
            }
            // Atomic on the aligned word that holds the byte (little-endian: byte k of the word is bits 8k..8k+7);
            // the other bits are OR-ed with 0, so bytes around the log are never changed.
            nint at = (nint)(log + index);
            ulong* word = (ulong*)(at & ~(nint)7);
            ulong bit = 1UL << (int)(((ulong)(at & 7) << 3) | (page & 7));
            if ((Volatile.Read(ref *word) & bit) == 0 && (Interlocked.Or(ref *word, bit) & bit) == 0)
                Interlocked.Increment(ref _pagesMarked);
            if (page == last) return;
        }
    }
}

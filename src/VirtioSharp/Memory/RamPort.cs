namespace VirtioSharp.Memory;

/// <summary>
/// Plain RAM: the fast path when nothing sits between device and memory. With a <see cref="DirtyLog"/> (vhost-user live
/// migration) every successful write marks its pages after the data is in place; without one, or while it is inactive,
/// a write pays one field test.
/// </summary>
public readonly unsafe struct RamPort(GuestMemory memory, DirtyLog? log = null) : IPhysicalPort
{
    /// <summary>The RAM accesses go to.</summary>
    public GuestMemory Memory { get; } = memory;
    /// <summary>The dirty-page log writes are marked in, if any.</summary>
    public DirtyLog? Log { get; } = log;
    /// <inheritdoc/>
    public MemStatus Read(ulong gpa, Span<byte> dst) => Memory.Read(gpa, dst);
    /// <inheritdoc/>
    public MemStatus Write(ulong gpa, ReadOnlySpan<byte> src)
    {
        var st = Memory.Write(gpa, src);
        if (Log is { Active: true } l && st == MemStatus.Ok) l.Mark(gpa, (ulong)src.Length);
        return st;
    }
    /// <inheritdoc/>
    public MemStatus LoadU16Acquire(ulong gpa, out ushort value) => Memory.LoadU16(gpa, out value);
    /// <inheritdoc/>
    public MemStatus StoreU16Release(ulong gpa, ushort value)
    {
        var st = Memory.StoreU16(gpa, value);
        if (Log is { Active: true } l && st == MemStatus.Ok) l.Mark(gpa, 2);
        return st;
    }
    /// <inheritdoc/>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public void Barrier(BarrierOp op, Dma.BarrierKind strength)
    {
        if (op == BarrierOp.Full || strength == Dma.BarrierKind.Platform) Interlocked.MemoryBarrier();
    }
    /// <inheritdoc/>
    public bool LogsWrites => Log is { Active: true };
    /// <inheritdoc/>
    public void MarkWritten(ulong gpa, ulong len) => Log?.Mark(gpa, len);
    /// <inheritdoc/>
    public MemStatus Check(ulong gpa, ulong len, Access access) =>
        gpa + len < gpa ? MemStatus.Overflow : Memory.IsBacked(gpa, len) ? MemStatus.Ok : MemStatus.Unmapped;
    /// <inheritdoc/>
    public MemStatus MapHost(ulong gpa, ulong len, Access access, out nint host, out ulong contiguous)
    {
        if (!Memory.TryGetHost(gpa, out byte* p, out ulong available)) { host = 0; contiguous = 0; return MemStatus.Unmapped; }
        host = (nint)p;
        contiguous = Math.Min(available, len);
        return MemStatus.Ok;
    }
}

using VirtioSharp.Memory;

namespace VirtioSharp.Testing;

/// <summary>A device address space that records every access made through it before passing it on.</summary>
/// <param name="inner">The address space the accesses go to.</param>
/// <param name="log">Where each access is recorded.</param>
public readonly struct LoggingMemory<TInner>(TInner inner, AccessLog log) : IDeviceMemory where TInner : struct, IDeviceMemory
{
    /// <summary>The log the accesses go to.</summary>
    public AccessLog Log { get; } = log;

    /// <inheritdoc/>
    public MemStatus Read(ulong addr, Span<byte> dst)
    {
        var st = inner.Read(addr, dst);
        Log.Add(new(addr, (ulong)dst.Length, Access.Read, st, false));
        return st;
    }

    /// <inheritdoc/>
    public MemStatus Write(ulong addr, ReadOnlySpan<byte> src)
    {
        var st = inner.Write(addr, src);
        Log.Add(new(addr, (ulong)src.Length, Access.Write, st, false));
        return st;
    }

    /// <inheritdoc/>
    public MemStatus LoadU16Acquire(ulong addr, out ushort value)
    {
        var st = inner.LoadU16Acquire(addr, out value);
        Log.Add(new(addr, 2, Access.Read, st, false));
        return st;
    }

    /// <inheritdoc/>
    public MemStatus LoadU16AcquireThenRead(ulong addr, int acquireOffset, out ushort value, Span<byte> dst)
    {
        var st = inner.LoadU16AcquireThenRead(addr, acquireOffset, out value, dst);
        Log.Add(new(addr, (ulong)dst.Length, Access.Read, st, false));
        return st;
    }

    /// <inheritdoc/>
    public void Barrier(BarrierOp op, Dma.BarrierKind strength) => inner.Barrier(op, strength);

    /// <inheritdoc/>
    public MemStatus StoreU16Release(ulong addr, ushort value)
    {
        var st = inner.StoreU16Release(addr, value);
        Log.Add(new(addr, 2, Access.Write, st, false));
        return st;
    }

    /// <inheritdoc/>
    public MemStatus MapForIo(ulong addr, ulong len, Access access, out nint host, out ulong contiguous)
    {
        var st = inner.MapForIo(addr, len, access, out host, out contiguous);
        Log.Add(new(addr, st == MemStatus.Ok ? contiguous : len, access, st, true));
        return st;
    }

    /// <inheritdoc/>
    public bool LogsWrites => inner.LogsWrites;

    /// <inheritdoc/>
    public MemStatus MarkWritten(ulong addr, ulong len) => inner.MarkWritten(addr, len);

    /// <inheritdoc/>
    public MemStatus Check(ulong addr, ulong len, Access access)
    {
        var st = inner.Check(addr, len, access);
        Log.Add(new(addr, len, access, st, true));
        return st;
    }
}

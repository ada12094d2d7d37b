using VirtioSharp.Memory;

namespace VirtioSharp.Platform;

/// <summary>
/// A device's port onto the simulated bus: enforces protected pages (fault or ciphertext), for a coherent device snoops
/// the CPU cache, and with an ordering model (<see cref="StoreBufferModel"/>) shows the device only the CPU stores
/// drained so far and buffers the device's own stores until its barriers drain them.
/// </summary>
public sealed class SimBusPort(SimPlatform platform, string device, bool coherent) : IPhysicalPort
{
    private const ulong PageSize = 4096;
    private readonly GuestMemory _ram = platform.Ram;
    private readonly ProtectedMemory? _prot = platform.Protection;
    private readonly CpuCache? _cache = coherent ? platform.Cache : null;
    private readonly StoreBufferModel? _order = platform.Ordering;

    private MemStatus CheckProtection(ulong gpa, ulong len, Access access)
    {
        if (_prot is null || _prot.Mode != ProtectionMode.Fault) return MemStatus.Ok;
        for (ulong p = gpa & ~(PageSize - 1); p < gpa + len; p += PageSize)
            if (!_prot.IsShared(p))
            {
                _prot.RecordViolation(device, p, access);
                return MemStatus.ProtectedPage;
            }
        return MemStatus.Ok;
    }

    /// <summary>
    /// The bus models private pages and cache snooping on every access, so it never hands out host memory: devices
    /// copy through Read/Write (<see cref="MemStatus.NoDirectAccess"/>), after the same checks.
    /// </summary>
    public MemStatus MapHost(ulong gpa, ulong len, Access access, out nint host, out ulong contiguous)
    {
        host = 0;
        contiguous = 0;
        var st = Check(gpa, len, access);
        return st != MemStatus.Ok ? st : MemStatus.NoDirectAccess;
    }

    /// <inheritdoc/>
    public bool LogsWrites => false;

    /// <inheritdoc/>
    public void MarkWritten(ulong gpa, ulong len) { }   // the simulated machine does not migrate

    /// <inheritdoc/>
    public MemStatus Check(ulong gpa, ulong len, Access access)
    {
        if (gpa + len < gpa) return MemStatus.Overflow;
        if (!_ram.IsBacked(gpa, len)) return MemStatus.Unmapped;
        return CheckProtection(gpa, len, access);
    }

    /// <inheritdoc/>
    public MemStatus Read(ulong gpa, Span<byte> dst)
    {
        var st = Check(gpa, (ulong)dst.Length, Access.Read);
        if (st != MemStatus.Ok) return st;
        if (_cache is not null) _cache.SnoopRead(gpa, dst);
        else _ram.Read(gpa, dst);
        _order?.DeviceRead(gpa, dst);
        if (_prot is not null) ScramblePrivate(gpa, dst, Access.Read);
        return MemStatus.Ok;
    }

    /// <inheritdoc/>
    public MemStatus Write(ulong gpa, ReadOnlySpan<byte> src)
    {
        var st = Check(gpa, (ulong)src.Length, Access.Write);
        if (st != MemStatus.Ok) return st;
        if (_prot is not null && !_prot.IsShared(gpa, (ulong)src.Length))
        {
            // Writing through the host's key-less view of encrypted memory: the guest will read garbage.
            var tmp = src.ToArray();
            ScramblePrivate(gpa, tmp, Access.Write);
            src = tmp;
        }
        if (_order is not null) _order.DeviceWrite(this, gpa, src);
        else Commit(gpa, src);
        return MemStatus.Ok;
    }

    /// <summary>A device store reaching memory (at once, or when the ordering model drains it).</summary>
    internal void Commit(ulong gpa, ReadOnlySpan<byte> src)
    {
        if (_cache is not null) _cache.SnoopWrite(gpa, src);
        else _ram.Write(gpa, src);
    }

    /// <inheritdoc/>
    public void Barrier(BarrierOp op, Dma.BarrierKind strength)
    {
        if (_order is not null) _order.DeviceBarrier(op, strength);
        else if (op == BarrierOp.Full || strength == Dma.BarrierKind.Platform) Interlocked.MemoryBarrier();
    }

    private void ScramblePrivate(ulong gpa, Span<byte> data, Access access)
    {
        bool touched = false;
        for (int i = 0; i < data.Length;)
        {
            ulong a = gpa + (ulong)i;
            int n = (int)Math.Min(PageSize - (a & (PageSize - 1)), (ulong)(data.Length - i));
            if (!_prot!.IsShared(a)) { _prot.Scramble(a, data.Slice(i, n)); touched = true; }
            i += n;
        }
        if (touched) _prot!.RecordViolation(device, gpa, access);
    }

    /// <inheritdoc/>
    public MemStatus LoadU16Acquire(ulong gpa, out ushort value)
    {
        value = 0;
        if ((gpa & 1) != 0) return MemStatus.Misaligned;
        Span<byte> b = stackalloc byte[2];
        var st = Read(gpa, b);
        Interlocked.MemoryBarrier();
        if (st == MemStatus.Ok) value = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(b);
        return st;
    }

    /// <inheritdoc/>
    public MemStatus StoreU16Release(ulong gpa, ushort value)
    {
        if ((gpa & 1) != 0) return MemStatus.Misaligned;
        Interlocked.MemoryBarrier();
        Span<byte> b = stackalloc byte[2];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        return Write(gpa, b);
    }
}

using System.Runtime.CompilerServices;

namespace VirtioSharp.Memory;

/// <summary>
/// A device address space: translate (identity, IOMMU, IOTLB) then reach memory through a physical port. Accesses that
/// span translation or region boundaries are split into fragments, each translated and checked on its own.
/// </summary>
public readonly struct DeviceMemory<TTranslate, TPort>(TTranslate translate, TPort port) : IDeviceMemory
    where TTranslate : struct, ITranslate
    where TPort : struct, IPhysicalPort
{
    private readonly TTranslate _translate = translate;
    private readonly TPort _port = port;

    /// <summary>The physical port translated accesses reach memory through.</summary>
    public TPort Port => _port;

    // Each access tries one translation first: ring fields and most buffers fit in one page, and the slow
    // fragment loops are kept out of line so the common case inlines into the queue code.
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public MemStatus Read(ulong addr, Span<byte> dst)
    {
        if (addr + (ulong)dst.Length < addr) return MemStatus.Overflow;
        if (dst.IsEmpty) return MemStatus.Ok;
        var st = _translate.Translate(addr, Access.Read, out ulong gpa, out ulong contig);
        if (st != MemStatus.Ok) return st;
        if (contig >= (ulong)dst.Length) return _port.Read(gpa, dst);
        return ReadFragments(addr, dst);
    }

    private MemStatus ReadFragments(ulong addr, Span<byte> dst)
    {
        while (!dst.IsEmpty)
        {
            var st = _translate.Translate(addr, Access.Read, out ulong gpa, out ulong contig);
            if (st != MemStatus.Ok) return st;
            int n = (int)Math.Min(contig, (ulong)dst.Length);
            st = _port.Read(gpa, dst[..n]);
            if (st != MemStatus.Ok) return st;
            dst = dst[n..];
            addr += (ulong)n;
        }
        return MemStatus.Ok;
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public MemStatus Write(ulong addr, ReadOnlySpan<byte> src)
    {
        if (addr + (ulong)src.Length < addr) return MemStatus.Overflow;
        if (src.IsEmpty) return MemStatus.Ok;
        var st = _translate.Translate(addr, Access.Write, out ulong gpa, out ulong contig);
        if (st != MemStatus.Ok) return st;
        if (contig < (ulong)src.Length) return WriteFragments(addr, src);
        // One fragment: translated and permitted once. RAM writes are all-or-nothing on their own; other ports are
        // checked first so a fault never leaves a partial write behind.
        if (typeof(TPort) != typeof(RamPort))
        {
            st = _port.Check(gpa, (ulong)src.Length, Access.Write);
            if (st != MemStatus.Ok) return st;
        }
        return _port.Write(gpa, src);
    }

    private MemStatus WriteFragments(ulong addr, ReadOnlySpan<byte> src)
    {
        // Check the whole range first so a fault half way never leaves a partial write behind.
        var check = Check(addr, (ulong)src.Length, Access.Write);
        if (check != MemStatus.Ok) return check;
        while (!src.IsEmpty)
        {
            var st = _translate.Translate(addr, Access.Write, out ulong gpa, out ulong contig);
            if (st != MemStatus.Ok) return st;
            int n = (int)Math.Min(contig, (ulong)src.Length);
            st = _port.Write(gpa, src[..n]);
            if (st != MemStatus.Ok) return st;
            src = src[n..];
            addr += (ulong)n;
        }
        return MemStatus.Ok;
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public MemStatus LoadU16Acquire(ulong addr, out ushort value)
    {
        var st = _translate.Translate(addr, Access.Read, out ulong gpa, out ulong contig);
        if (st != MemStatus.Ok || contig < 2) { value = 0; return st != MemStatus.Ok ? st : MemStatus.Misaligned; }
        return _port.LoadU16Acquire(gpa, out value);
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public MemStatus LoadU16AcquireThenRead(ulong addr, int acquireOffset, out ushort value, Span<byte> dst)
    {
        value = 0;
        if (addr + (ulong)dst.Length < addr) return MemStatus.Overflow;
        if (dst.Length < 2 || (uint)acquireOffset > (uint)(dst.Length - 2)) return MemStatus.Misaligned;
        var st = _translate.Translate(addr, Access.Read, out ulong gpa, out ulong contig);
        if (st != MemStatus.Ok) return st;
        if (contig < (ulong)dst.Length) return LoadThenReadFragments(addr, acquireOffset, out value, dst);
        st = _port.LoadU16Acquire(gpa + (ulong)acquireOffset, out value);
        return st != MemStatus.Ok ? st : _port.Read(gpa, dst);
    }

    private MemStatus LoadThenReadFragments(ulong addr, int acquireOffset, out ushort value, Span<byte> dst)
    {
        var st = LoadU16Acquire(addr + (ulong)acquireOffset, out value);
        return st != MemStatus.Ok ? st : ReadFragments(addr, dst);
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Barrier(BarrierOp op, Dma.BarrierKind strength) => _port.Barrier(op, strength);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public MemStatus StoreU16Release(ulong addr, ushort value)
    {
        var st = _translate.Translate(addr, Access.Write, out ulong gpa, out ulong contig);
        if (st != MemStatus.Ok) return st;
        if (contig < 2) return MemStatus.Misaligned;
        return _port.StoreU16Release(gpa, value);
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public MemStatus Check(ulong addr, ulong len, Access access)
    {
        if (addr + len < addr) return MemStatus.Overflow;
        if (len == 0) return MemStatus.Ok;
        var st = _translate.Translate(addr, access, out ulong gpa, out ulong contig);
        if (st != MemStatus.Ok) return st;
        if (contig >= len) return _port.Check(gpa, len, access);
        return CheckFragments(addr, len, access);
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public MemStatus MapForIo(ulong addr, ulong len, Access access, out nint host, out ulong contiguous)
    {
        host = 0;
        contiguous = 0;
        if (addr + len < addr) return MemStatus.Overflow;
        if (len == 0) return MemStatus.Ok;
        var st = _translate.Translate(addr, access, out ulong gpa, out ulong contig);
        if (st != MemStatus.Ok) return st;
        return _port.MapHost(gpa, Math.Min(contig, len), access, out host, out contiguous);
    }

    /// <inheritdoc/>
    public bool LogsWrites
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _port.LogsWrites;
    }

    /// <inheritdoc/>
    public MemStatus MarkWritten(ulong addr, ulong len)
    {
        if (!_port.LogsWrites || len == 0) return MemStatus.Ok;
        if (addr + len < addr) return MemStatus.Overflow;
        var first = MemStatus.Ok;
        while (len > 0)
        {
            var st = _translate.Translate(addr, Access.Write, out ulong gpa, out ulong contig);
            ulong n;
            if (st == MemStatus.Ok)
            {
                n = Math.Min(contig, len);
                _port.MarkWritten(gpa, n);
            }
            else
            {
                // A piece that no longer translates is skipped, not the rest of the range: go on at the next page.
                if (first == MemStatus.Ok) first = st;
                n = Math.Min(4096 - (addr & 4095), len);
            }
            addr += n;
            len -= n;
        }
        return first;
    }

    private MemStatus CheckFragments(ulong addr, ulong len, Access access)
    {
        while (len > 0)
        {
            var st = _translate.Translate(addr, access, out ulong gpa, out ulong contig);
            if (st != MemStatus.Ok) return st;
            ulong n = Math.Min(contig, len);
            st = _port.Check(gpa, n, access);
            if (st != MemStatus.Ok) return st;
            addr += n;
            len -= n;
        }
        return MemStatus.Ok;
    }
}

/// <summary>Shorthands for the address spaces used most.</summary>
public static class DeviceMemory
{
    /// <summary>Bus address = GPA, straight to RAM: a device with no IOMMU and no protection.</summary>
    public static DeviceMemory<IdentityTranslate, RamPort> Identity(GuestMemory ram) => new(default, new RamPort(ram));

    /// <summary>Bus addresses translated by <paramref name="translator"/>, then RAM.</summary>
    public static DeviceMemory<TranslatorRef, RamPort> Translated(IAddressTranslator translator, GuestMemory ram) =>
        new(new TranslatorRef(translator), new RamPort(ram));

    /// <summary>Translation and port both provided by objects: the simulated platform's general case.</summary>
    public static DeviceMemory<TranslatorRef, PortRef> Of(IAddressTranslator translator, IPhysicalPort port) =>
        new(new TranslatorRef(translator), new PortRef(port));
}

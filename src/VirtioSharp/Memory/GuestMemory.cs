using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VirtioSharp.Memory;

/// <summary>
/// The guest-physical address space: a sorted set of non-overlapping regions. This is raw RAM — no translation, no
/// permission, no cache. Device code never uses it directly; it reaches memory through an <see cref="IDeviceMemory"/>.
/// </summary>
public sealed unsafe class GuestMemory : ICpuMemory, IDisposable
{
    private readonly GuestRegion[] _regions;
    // The first region inline: most guests have one, so most lookups end here without touching the array.
    private readonly GuestRegion _r0;
    private readonly ulong _r0Gpa;
    private readonly ulong _r0Size;

    /// <summary>Guest memory made of <paramref name="regions"/>, which must not overlap.</summary>
    public GuestMemory(params GuestRegion[] regions)
    {
        if (regions.Length == 0) throw new ArgumentException("guest memory needs at least one region", nameof(regions));
        _regions = regions.OrderBy(r => r.Gpa).ToArray();
        for (int i = 1; i < _regions.Length; i++)
            if (_regions[i].Gpa < _regions[i - 1].End)
                throw new ArgumentException($"regions '{_regions[i - 1].Name}' and '{_regions[i].Name}' overlap");
        _r0 = _regions[0];
        _r0Gpa = _r0.Gpa;
        _r0Size = _r0.Size;
    }

    /// <summary>One region of <paramref name="size"/> bytes at guest-physical 0.</summary>
    public static GuestMemory Create(ulong size, ulong gpa = 0) => new(new GuestRegion(gpa, size));

    /// <summary>The regions, sorted by address.</summary>
    public IReadOnlyList<GuestRegion> Regions => _regions;
    /// <summary>Sum of the region sizes.</summary>
    public ulong TotalSize => _regions.Aggregate(0UL, (s, r) => s + r.Size);

    /// <summary>Host pointer for <paramref name="gpa"/> and how many bytes follow it inside the same region.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryGetHost(ulong gpa, out byte* host, out ulong available)
    {
        ulong off0 = gpa - _r0Gpa;
        if (off0 < _r0Size)
        {
            host = _r0.Host + off0;
            available = _r0Size - off0;
            return true;
        }
        return TryGetHostSlow(gpa, out host, out available);
    }

    private bool TryGetHostSlow(ulong gpa, out byte* host, out ulong available)
    {
        var regions = _regions;
        for (int i = 1; i < regions.Length; i++)
        {
            var r = regions[i];
            ulong off = gpa - r.Gpa;
            if (off < r.Size)
            {
                host = r.Host + off;
                available = r.Size - off;
                return true;
            }
        }
        host = null;
        available = 0;
        return false;
    }

    /// <summary>True if every byte of [gpa, gpa+len) is backed by some region.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsBacked(ulong gpa, ulong len)
    {
        ulong off0 = gpa - _r0Gpa;
        if (off0 < _r0Size && len <= _r0Size - off0) return true;
        return IsBackedSlow(gpa, len);
    }

    private bool IsBackedSlow(ulong gpa, ulong len)
    {
        if (gpa + len < gpa) return false;
        while (len > 0)
        {
            if (!TryGetHost(gpa, out _, out ulong avail)) return false;
            ulong n = Math.Min(avail, len);
            gpa += n; len -= n;
        }
        return true;
    }

    /// <inheritdoc/>
    public MemStatus Read(ulong gpa, Span<byte> dst)
    {
        ulong off0 = gpa - _r0Gpa;
        if (off0 < _r0Size && (ulong)dst.Length <= _r0Size - off0)
        {
            Unsafe.CopyBlockUnaligned(ref MemoryMarshal.GetReference(dst), ref *(_r0.Host + off0), (uint)dst.Length);
            return MemStatus.Ok;
        }
        return ReadSlow(gpa, dst);
    }

    private MemStatus ReadSlow(ulong gpa, Span<byte> dst)
    {
        if (gpa + (ulong)dst.Length < gpa) return MemStatus.Overflow;
        while (!dst.IsEmpty)
        {
            if (!TryGetHost(gpa, out byte* p, out ulong avail)) return MemStatus.Unmapped;
            int n = (int)Math.Min(avail, (ulong)dst.Length);
            new ReadOnlySpan<byte>(p, n).CopyTo(dst);
            dst = dst[n..];
            gpa += (ulong)n;
        }
        return MemStatus.Ok;
    }

    /// <summary>Writes all of <paramref name="src"/> or, if any byte is unbacked, nothing.</summary>
    public MemStatus Write(ulong gpa, ReadOnlySpan<byte> src)
    {
        ulong off0 = gpa - _r0Gpa;
        if (off0 < _r0Size && (ulong)src.Length <= _r0Size - off0)
        {
            Unsafe.CopyBlockUnaligned(ref *(_r0.Host + off0), ref MemoryMarshal.GetReference(src), (uint)src.Length);
            return MemStatus.Ok;
        }
        return WriteSlow(gpa, src);
    }

    private MemStatus WriteSlow(ulong gpa, ReadOnlySpan<byte> src)
    {
        if (gpa + (ulong)src.Length < gpa) return MemStatus.Overflow;
        if (!IsBackedSlow(gpa, (ulong)src.Length)) return MemStatus.Unmapped;   // no partial writes
        while (!src.IsEmpty)
        {
            if (!TryGetHost(gpa, out byte* p, out ulong avail)) return MemStatus.Unmapped;
            int n = (int)Math.Min(avail, (ulong)src.Length);
            src[..n].CopyTo(new Span<byte>(p, n));
            src = src[n..];
            gpa += (ulong)n;
        }
        return MemStatus.Ok;
    }

    /// <inheritdoc/>
    public MemStatus Copy(ulong dstGpa, ulong srcGpa, ulong length)
    {
        if (dstGpa + length < dstGpa || srcGpa + length < srcGpa) return MemStatus.Overflow;
        while (length > 0)
        {
            if (!TryGetHost(dstGpa, out byte* d, out ulong dAvail) || !TryGetHost(srcGpa, out byte* s, out ulong sAvail))
                return MemStatus.Unmapped;
            ulong n = Math.Min(length, Math.Min(dAvail, sAvail));
            Buffer.MemoryCopy(s, d, n, n);
            dstGpa += n; srcGpa += n; length -= n;
        }
        return MemStatus.Ok;
    }

    /// <summary>Fills [<paramref name="gpa"/>, +<paramref name="len"/>) with <paramref name="value"/>.</summary>
    public MemStatus Fill(ulong gpa, ulong len, byte value)
    {
        if (gpa + len < gpa) return MemStatus.Overflow;
        while (len > 0)
        {
            if (!TryGetHost(gpa, out byte* p, out ulong avail)) return MemStatus.Unmapped;
            ulong n = Math.Min(avail, len);
            new Span<byte>(p, checked((int)n)).Fill(value);
            gpa += n; len -= n;
        }
        return MemStatus.Ok;
    }

    /// <summary>
    /// Host pointer to a contiguous range that must lie in one region; for the driver's own coherent ring memory,
    /// which it allocated itself and therefore trusts.
    /// </summary>
    internal byte* HostPointer(ulong gpa, ulong len)
    {
        if (!TryGetHost(gpa, out byte* p, out ulong avail) || avail < len)
            throw new ArgumentOutOfRangeException(nameof(gpa), $"0x{gpa:x}+0x{len:x} is not inside one guest memory region");
        return p;
    }

    /// <summary>Acquire-load of a naturally aligned 16-bit field in RAM.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal MemStatus LoadU16(ulong gpa, out ushort value)
    {
        if ((gpa & 1) != 0) { value = 0; return MemStatus.Misaligned; }
        if (!TryGetHost(gpa, out byte* p, out _)) { value = 0; return MemStatus.Unmapped; }
        value = Volatile.Read(ref *(ushort*)p);
        return MemStatus.Ok;
    }

    /// <summary>Release-store of a naturally aligned 16-bit field in RAM.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal MemStatus StoreU16(ulong gpa, ushort value)
    {
        if ((gpa & 1) != 0) return MemStatus.Misaligned;
        if (!TryGetHost(gpa, out byte* p, out _)) return MemStatus.Unmapped;
        Volatile.Write(ref *(ushort*)p, value);
        return MemStatus.Ok;
    }

    /// <summary>Frees the regions' native memory.</summary>
    public void Dispose()
    {
        foreach (var r in _regions) r.Dispose();
    }
}

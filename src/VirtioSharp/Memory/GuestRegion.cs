using System.Runtime.InteropServices;

namespace VirtioSharp.Memory;

/// <summary>
/// One contiguous range of guest-physical memory backed by native memory. The memory is shared with the device side by
/// design: today a native allocation, later a memfd mapping shared with QEMU.
/// </summary>
public sealed unsafe class GuestRegion : IDisposable
{
    private readonly bool _owned;
    private readonly IDisposable? _owner;
    private byte* _host;

    /// <summary>Guest-physical address of the region's first byte.</summary>
    public ulong Gpa { get; }
    /// <summary>Size in bytes.</summary>
    public ulong Size { get; }
    /// <summary>Name for diagnostics.</summary>
    public string Name { get; }
    /// <summary>First guest-physical address past the region.</summary>
    public ulong End => Gpa + Size;
    internal byte* Host => _host;

    /// <summary>Allocates zeroed, page-aligned native memory for the region.</summary>
    public GuestRegion(ulong gpa, ulong size, string name = "ram")
    {
        Validate(gpa, size);
        Gpa = gpa; Size = size; Name = name;
        _host = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
        NativeMemory.Clear(_host, (nuint)size);
        _owned = true;
    }

    /// <summary>Wraps memory owned elsewhere (an mmap), kept alive by <paramref name="owner"/>.</summary>
    public GuestRegion(ulong gpa, ulong size, nint host, IDisposable? owner, string name)
    {
        Validate(gpa, size);
        if (host == 0) throw new ArgumentException("host pointer must not be null", nameof(host));
        Gpa = gpa; Size = size; Name = name;
        _host = (byte*)host;
        _owner = owner;
    }

    private static void Validate(ulong gpa, ulong size)
    {
        if (size == 0) throw new ArgumentOutOfRangeException(nameof(size), "a guest memory region needs a non-zero size");
        if (gpa + size < gpa) throw new ArgumentOutOfRangeException(nameof(size), $"region 0x{gpa:x}+0x{size:x} wraps the address space");
        if ((gpa & 1) != 0 || (size & 1) != 0)
            throw new ArgumentException("regions must be 2-byte aligned so ring indexes never straddle two regions");
    }

    /// <summary>Whether <paramref name="gpa"/> falls inside the region.</summary>
    public bool Contains(ulong gpa) => gpa - Gpa < Size;

    /// <summary>A span over part of the region for host-side code (tests, backing setup). Not for device access.</summary>
    public Span<byte> AsSpan(ulong offset, int length)
    {
        if (offset > Size || (ulong)length > Size - offset) throw new ArgumentOutOfRangeException(nameof(length));
        return new Span<byte>(_host + offset, length);
    }

    /// <summary>Frees the native memory (or releases the owner of a mapping).</summary>
    public void Dispose()
    {
        var p = _host;
        _host = null;
        if (p == null) return;
        if (_owned) NativeMemory.AlignedFree(p);
        _owner?.Dispose();
    }
}

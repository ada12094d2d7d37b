using System.Runtime.InteropServices;
using VirtioSharp.Memory;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// Guest memory for the ring targets: two regions with a hole between them, so descriptors, indirect tables and
/// buffers can straddle a region edge or point into nothing. Allocated once per process and cleared per input.
/// </summary>
internal sealed unsafe class FuzzGuestMemory
{
    public const ulong LowGpa = 0, LowSize = 0x4000;
    public const ulong HighGpa = 0x5000, HighSize = 0x2000;
    /// <summary>One past the last backed byte; fuzzed offsets are folded into [0, Span).</summary>
    public const ulong Span = HighGpa + HighSize;
    private readonly byte* _low, _high;

    public static FuzzGuestMemory Shared { get; } = new();

    private FuzzGuestMemory()
    {
        _low = (byte*)NativeMemory.AllocZeroed((nuint)LowSize);
        _high = (byte*)NativeMemory.AllocZeroed((nuint)HighSize);
        Memory = new GuestMemory(
            new GuestRegion(LowGpa, LowSize, (nint)_low, null, "fuzz-low"),
            new GuestRegion(HighGpa, HighSize, (nint)_high, null, "fuzz-high"));
    }

    public GuestMemory Memory { get; }

    public DeviceMemory<IdentityTranslate, RamPort> DeviceView => new(default, new RamPort(Memory));

    public void Clear()
    {
        new Span<byte>(_low, (int)LowSize).Clear();
        new Span<byte>(_high, (int)HighSize).Clear();
    }

    /// <summary>The driver's (CPU's) write: as much of <paramref name="bytes"/> as is backed, byte-wise around the hole.</summary>
    public void Poke(ulong gpa, ReadOnlySpan<byte> bytes)
    {
        for (int i = 0; i < bytes.Length; i++)
        {
            ulong a = gpa + (ulong)i;
            if (a - LowGpa < LowSize) _low[a - LowGpa] = bytes[i];
            else if (a - HighGpa < HighSize) _high[a - HighGpa] = bytes[i];
        }
    }

    public void PokeU16(ulong gpa, ushort v) => Poke(gpa, [(byte)v, (byte)(v >> 8)]);
}

using VirtioSharp.Memory;

namespace VirtioSharp.Platform;

/// <summary>
/// Protected guest memory (SEV / TDX / POWER secure guests): pages are private unless the guest shared them. The host
/// (every device) can only use shared pages; the DMA ops' job is to make sure it never needs another.
/// </summary>
public sealed class ProtectedMemory(GuestMemory ram, ProtectionMode mode, ulong key = 0x9E3779B97F4A7C15UL)
{
    private const int PageShift = 12;
    private readonly HashSet<ulong> _shared = new();

    /// <summary>What a device's access to a private page does.</summary>
    public ProtectionMode Mode { get; } = mode;
    internal long Violations { get; private set; }
    internal List<string> Log { get; } = new();
    internal int SharedPages => _shared.Count;

    /// <summary>Shares (or makes private again) the pages covering [<paramref name="gpa"/>, +<paramref name="length"/>).</summary>
    public void SetShared(ulong gpa, ulong length, bool shared)
    {
        for (ulong p = gpa >> PageShift; p <= (gpa + length - 1) >> PageShift; p++)
            if (shared) _shared.Add(p); else _shared.Remove(p);
    }

    internal bool IsShared(ulong gpa) => _shared.Contains(gpa >> PageShift);

    /// <summary>True if every page of the range is shared.</summary>
    public bool IsShared(ulong gpa, ulong length)
    {
        if (length == 0) return true;
        for (ulong p = gpa >> PageShift; p <= (gpa + length - 1) >> PageShift; p++)
            if (!_shared.Contains(p)) return false;
        return true;
    }

    internal void RecordViolation(string device, ulong gpa, Access access)
    {
        Violations++;
        if (Log.Count < 1024) Log.Add($"{device}: {access} of private page 0x{gpa & ~4095UL:x}");
    }

    /// <summary>The keystream byte at <paramref name="gpa"/>: what "encryption" looks like to the host.</summary>
    internal byte KeyByte(ulong gpa)
    {
        ulong x = (gpa >> 3) * key;
        x ^= x >> 29;
        return (byte)(x >> (int)((gpa & 7) * 8));
    }

    internal void Scramble(ulong gpa, Span<byte> data)
    {
        for (int i = 0; i < data.Length; i++) data[i] ^= KeyByte(gpa + (ulong)i);
    }

    internal GuestMemory Ram => ram;
}

namespace VirtioSharp.Fuzz.Targets;

/// <summary>How the ring targets read a queue size from one byte: split sizes are powers of two, packed any size.</summary>
internal static class RingShape
{
    /// <summary>1..16 entries: 1 &lt;&lt; (b % 5) for split rings, b % 16 + 1 for packed ones.</summary>
    public static ushort Size(bool packed, byte b) => packed ? (ushort)(b % 16 + 1) : (ushort)(1 << (b % 5));
}

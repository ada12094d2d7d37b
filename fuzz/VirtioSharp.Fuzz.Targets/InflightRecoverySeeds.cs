namespace VirtioSharp.Fuzz.Targets;

/// <summary>Inflight seeds: a fresh region (the first start), then chains popped, some used, a crash and a recovery; split and packed.</summary>
public static class InflightRecoverySeeds
{
    public static IEnumerable<(string Name, byte[] Input)> Generate()
    {
        yield return ("split-crash", Program(packed: false, InflightRecoveryTarget.Config.EventIdx));
        yield return ("split-inorder-crash", Program(packed: false, InflightRecoveryTarget.Config.InOrder));
        yield return ("packed-crash", Program(packed: true, 0));
        yield return ("packed-inorder-crash", Program(packed: true, InflightRecoveryTarget.Config.InOrder));
        // A region that claims recovery state: stamped header, an entry marked in flight.
        var split = new InputBuilder().U8((int)InflightRecoveryTarget.Config.StampHeader).U8(3).U32(0);
        var region = new byte[16 + 16 * 8];
        region[16 + 16 * 2] = 1;   // head 2 in flight
        region[16 + 16 * 2 + 8] = 5;   // its counter
        yield return ("split-stamped", split.Bytes(region).U8((int)InflightRecoveryTarget.Op.Pop).ToArray());
    }

    private static byte[] Program(bool packed, InflightRecoveryTarget.Config cfg)
    {
        int size = 8;
        int regionBytes = packed ? 32 + 32 * size : 16 + 16 * size;
        regionBytes = (regionBytes + 63) & ~63;
        var b = new InputBuilder().U8((int)(cfg | (packed ? InflightRecoveryTarget.Config.Packed : 0))).U8(packed ? size - 1 : 3).U32(packed ? 0x8000_8000u : 0);
        b.Bytes(new byte[regionBytes]);   // all zero: not initialized, so the first start creates it
        const ushort avail = 1 << 7, next = 1, write = 2;
        for (int i = 0; i < 3; i++)
        {
            ulong buf = 0x3000 + (ulong)i * 0x100;
            if (packed)
            {
                Poke(b, (ulong)(2 * i + 1) * 16, new InputBuilder().U64(buf + 0x40).U32(32).U16(i).U16(avail | write).ToArray());
                Poke(b, (ulong)(2 * i) * 16, new InputBuilder().U64(buf).U32(16).U16(i).U16(avail | next).ToArray());
            }
            else
            {
                Poke(b, (ulong)(2 * i) * 16, new InputBuilder().U64(buf).U32(16).U16(next).U16(2 * i + 1).ToArray());
                Poke(b, (ulong)(2 * i + 1) * 16, new InputBuilder().U64(buf + 0x40).U32(32).U16(write).U16(0).ToArray());
                Poke(b, 0x1000 + 4 + 2UL * (ulong)i, [(byte)(2 * i), 0]);
            }
        }
        if (!packed) Poke(b, 0x1000 + 2, [3, 0]);
        for (int i = 0; i < 3; i++) b.U8((int)InflightRecoveryTarget.Op.Pop);
        b.U8((int)InflightRecoveryTarget.Op.AddUsed).U8(0).U8(1);
        b.U8((int)InflightRecoveryTarget.Op.Restart).U32(packed ? 0x8000_8000u : 0);
        for (int i = 0; i < 2; i++) b.U8((int)InflightRecoveryTarget.Op.Pop);
        b.U8((int)InflightRecoveryTarget.Op.AddUsed).U8(0).U8(2).U8((int)InflightRecoveryTarget.Op.Restart).U32(0);
        return b.ToArray();
    }

    private static void Poke(InputBuilder b, ulong at, byte[] bytes) =>
        b.U8((int)InflightRecoveryTarget.Op.Poke).U16((int)at).U8(bytes.Length).Bytes(bytes);
}

using VirtioSharp.Devices.Block;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>virtio-blk seeds: one request of each type the device serves, well formed, then a kick.</summary>
public static class BlkRequestSeeds
{
    public static IEnumerable<(string Name, byte[] Input)> Generate()
    {
        // Type index into the target's table: In, Out, Flush, GetId, Discard, WriteZeroes.
        yield return ("read", Req(0, 0, 4, 0x01, 0));
        yield return ("write", Req(0, 1, 4, 0x01, 1, fill: 0x5A));
        yield return ("write-split-header-indirect", Req(0, 1, 2, 0x04 | 0x10 | 0x02, 1, fill: 0x11, extraLen: 0x81));
        yield return ("flush", Req(0, 2, 0, 0x00, 0));
        yield return ("get-id", Req(0, 3, 0, 0x01 | 0x08, 0x80 | 19));
        yield return ("discard", Ranges(0, 4));
        yield return ("write-zeroes", Ranges(0, 5));
        yield return ("write-read-only", Req((int)BlkRequestTarget.Config.ReadOnly, 1, 4, 0x01, 0, fill: 1));
        yield return ("inorder-three", new InputBuilder().U8((int)BlkRequestTarget.Config.InOrder)
            .Bytes(Body(0, 2, 0x01, 0)).Bytes(Body(1, 4, 0x01, 0, 0x22)).Bytes(Body(0, 6, 0x01, 1)).U8((int)BlkRequestTarget.Op.Kick).ToArray());
    }

    private static byte[] Req(int cfg, int type, int sector, int shape, int len, int fill = 0, int extraLen = -1)
    {
        var b = new InputBuilder().U8(cfg).Bytes(Body(type, sector, shape, len, fill, extraLen));
        return b.U8((int)BlkRequestTarget.Op.Kick).ToArray();
    }

    private static byte[] Body(int type, int sector, int shape, int len, int fill = 0, int extraLen = -1)
    {
        // sector byte < 0x80 means sector (byte * 2); shape bits: data segments, split header, status in data, indirect.
        var b = new InputBuilder().U8((int)BlkRequestTarget.Op.Request).U8(type).U8(sector / 2).U8(shape);
        int segs = shape & 3;
        for (int i = 0; i < segs; i++)
        {
            b.U8(i == 1 && extraLen >= 0 ? extraLen : len);
            if (type == 1) b.U8(fill);
        }
        return b.ToArray();
    }

    private static byte[] Ranges(int cfg, int type)
    {
        var seg = new InputBuilder().U64(4).U32(2).U32(0).ToArray();
        // One data segment of 16 bytes (length byte 0x80 | 15 means 16 bytes) holding one range.
        return new InputBuilder().U8(cfg).U8((int)BlkRequestTarget.Op.Request).U8(type).U8(0).U8(1).U8(0x80 | 15).Bytes(seg)
            .U8((int)BlkRequestTarget.Op.Kick).ToArray();
    }
}

namespace VirtioSharp.Fuzz.Targets;

/// <summary>Driver-ring seeds: add chains, let the honest device serve them, take them back; split and packed.</summary>
public static class DriverRingSeeds
{
    public static IEnumerable<(string Name, byte[] Input)> Generate()
    {
        foreach (var (name, cfg) in new[]
        {
            ("split", DriverRingTarget.Config.EventIdx), ("split-indirect", DriverRingTarget.Config.Indirect),
            ("split-inorder", DriverRingTarget.Config.InOrder), ("packed", DriverRingTarget.Config.Packed | DriverRingTarget.Config.EventIdx),
            ("packed-inorder", DriverRingTarget.Config.Packed | DriverRingTarget.Config.InOrder),
        })
        {
            var b = new InputBuilder().U8((int)cfg).U8(cfg.HasFlag(DriverRingTarget.Config.Packed) ? 7 : 3);
            for (int i = 0; i < 3; i++)
                b.U8((int)DriverRingTarget.Op.Add).U8(1 | 1 << 2).U16(i * 0x200).U8(15).U16(i * 0x200 + 0x100).U8(63);
            b.U8((int)DriverRingTarget.Op.Kick).U8((int)DriverRingTarget.Op.DeviceServes).U8(3);
            for (int i = 0; i < 3; i++) b.U8((int)DriverRingTarget.Op.GetUsed);
            b.U8((int)DriverRingTarget.Op.Callbacks).U8(1);
            yield return (name, b.ToArray());
        }
        // A hostile device: used idx far ahead, then an element naming a head never added.
        yield return ("split-hostile", new InputBuilder().U8(0).U8(3).U8((int)DriverRingTarget.Op.Add).U8(4).U16(0).U8(15)
            .U8((int)DriverRingTarget.Op.UsedElem).U8(0).U16(5).U32(16).U8((int)DriverRingTarget.Op.UsedIdx).U16(1)
            .U8((int)DriverRingTarget.Op.GetUsed).ToArray());
        yield return ("packed-hostile", new InputBuilder().U8(1).U8(7).U8((int)DriverRingTarget.Op.Add).U8(4).U16(0).U8(15)
            .U8((int)DriverRingTarget.Op.PackedUsed).U8(0).U16(0).U32(4096).U8(1).U8((int)DriverRingTarget.Op.GetUsed).ToArray());
    }
}

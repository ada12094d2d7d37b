namespace VirtioSharp.Tests.Support;

/// <summary>What a racing peer does to the device's reads: sees each successful read's bytes and may change them.</summary>
public sealed class ReadHook
{
    public Action<ulong, Span<byte>>? AfterRead { get; set; }
}

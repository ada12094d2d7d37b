namespace VirtioSharp.Tests.Support;

/// <summary>The DMA modes the property and rollback tests run in.</summary>
public enum DmaMode
{
    Direct,
    IommuStrict,
    IommuLazy,
    Bounce,
    NonCoherent,
    /// <summary>A coherent device on a platform with a CPU cache: coherent direct ops, the device snoops.</summary>
    CoherentCached,
}

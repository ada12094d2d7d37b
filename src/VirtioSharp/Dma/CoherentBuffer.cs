namespace VirtioSharp.Dma;

/// <summary>A coherent allocation: the CPU uses <see cref="Gpa"/>, the device <see cref="Bus"/>.</summary>
public readonly record struct CoherentBuffer(ulong Gpa, ulong Bus, ulong Size);

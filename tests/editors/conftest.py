"""What the editor tests share: the file they open and complete in."""

SOURCE = """class Rectangle:
    def __init__(self, width, height):
        self.width = width
        self.height = height

    def area(self):
        return self.width * self.height

    def perimeter(self):
"""
